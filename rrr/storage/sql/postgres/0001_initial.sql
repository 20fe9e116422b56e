-- rrr schema v1 for PostgreSQL (also Supabase). Times are timestamptz (UTC); prices NUMERIC so
-- the vendor's decimal is kept exactly. Natural keys make every overlapping write idempotent.

CREATE TABLE IF NOT EXISTS crypto_trades (
    ticker        TEXT        NOT NULL,
    exchange_id   INTEGER     NOT NULL,
    trade_id      TEXT        NOT NULL,
    price         NUMERIC     NOT NULL CHECK (price > 0),
    size          NUMERIC     NOT NULL CHECK (size >= 0),
    conditions    SMALLINT[]  NOT NULL DEFAULT '{}',
    event_time    TIMESTAMPTZ NOT NULL,
    received_time TIMESTAMPTZ,
    source        TEXT        NOT NULL,
    inserted_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (ticker, exchange_id, trade_id)
);
CREATE INDEX IF NOT EXISTS crypto_trades_ticker_time ON crypto_trades (ticker, event_time);

-- A quote has no vendor id: the whole top-of-book state is the key, so replaying the same
-- quote is a no-op while two different states in the same millisecond are both kept.
CREATE TABLE IF NOT EXISTS crypto_quotes (
    ticker        TEXT        NOT NULL,
    exchange_id   INTEGER     NOT NULL,
    bid_price     NUMERIC     NOT NULL CHECK (bid_price > 0),
    bid_size      NUMERIC     NOT NULL CHECK (bid_size >= 0),
    ask_price     NUMERIC     NOT NULL CHECK (ask_price > 0),
    ask_size      NUMERIC     NOT NULL CHECK (ask_size >= 0),
    event_time    TIMESTAMPTZ NOT NULL,
    received_time TIMESTAMPTZ,
    source        TEXT        NOT NULL,
    inserted_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (ticker, exchange_id, event_time, bid_price, bid_size, ask_price, ask_size)
);
CREATE INDEX IF NOT EXISTS crypto_quotes_ticker_time ON crypto_quotes (ticker, event_time);

-- event_time is the window start. Polygon re-sends corrected bars for ~15 minutes: the later
-- write for the same key replaces the earlier one.
CREATE TABLE IF NOT EXISTS crypto_aggregates (
    ticker        TEXT        NOT NULL,
    timeframe     TEXT        NOT NULL,
    event_time    TIMESTAMPTZ NOT NULL,
    end_time      TIMESTAMPTZ NOT NULL,
    open          NUMERIC     NOT NULL CHECK (open > 0),
    high          NUMERIC     NOT NULL CHECK (high > 0),
    low           NUMERIC     NOT NULL CHECK (low > 0),
    close         NUMERIC     NOT NULL CHECK (close > 0),
    volume        NUMERIC     NOT NULL CHECK (volume >= 0),
    vwap          NUMERIC,
    trade_count   INTEGER,
    source        TEXT        NOT NULL,
    inserted_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (ticker, timeframe, event_time)
);

CREATE TABLE IF NOT EXISTS market_sentiment (
    id              BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    asset           TEXT        NOT NULL,
    source          TEXT        NOT NULL,
    sentiment_label TEXT        NOT NULL CHECK (sentiment_label IN ('bullish', 'neutral', 'bearish')),
    sentiment_score DOUBLE PRECISION NOT NULL CHECK (sentiment_score BETWEEN -1 AND 1),
    confidence      DOUBLE PRECISION NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    text            TEXT        NOT NULL DEFAULT '',
    metadata        JSONB       NOT NULL DEFAULT '{}',
    event_time      TIMESTAMPTZ NOT NULL,
    interval_start  TIMESTAMPTZ NOT NULL,
    UNIQUE (asset, source, interval_start)
);
CREATE INDEX IF NOT EXISTS market_sentiment_asset_time ON market_sentiment (asset, event_time);

CREATE TABLE IF NOT EXISTS system_events (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_time  TIMESTAMPTZ NOT NULL,
    component   TEXT        NOT NULL,
    event_type  TEXT        NOT NULL,
    severity    TEXT        NOT NULL CHECK (severity IN ('info', 'warning', 'error', 'critical')),
    message     TEXT        NOT NULL,
    details     JSONB       NOT NULL DEFAULT '{}',
    dedupe_key  TEXT        UNIQUE
);
CREATE INDEX IF NOT EXISTS system_events_component_time ON system_events (component, event_time);

CREATE TABLE IF NOT EXISTS backfill_chunks (
    chunk_id     TEXT        PRIMARY KEY,
    plan_id      TEXT        NOT NULL,
    ticker       TEXT        NOT NULL,
    multiplier   INTEGER     NOT NULL,
    timespan     TEXT        NOT NULL,
    start_time   TIMESTAMPTZ NOT NULL,
    end_time     TIMESTAMPTZ NOT NULL,
    status       TEXT        NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'running', 'done', 'failed')),
    bars_stored  INTEGER     NOT NULL DEFAULT 0,
    attempts     INTEGER     NOT NULL DEFAULT 0,
    last_error   TEXT,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    started_at   TIMESTAMPTZ,
    finished_at  TIMESTAMPTZ
);
CREATE INDEX IF NOT EXISTS backfill_chunks_plan ON backfill_chunks (plan_id, status);

-- A batch id is written in the same transaction as its rows: a redelivered batch is a no-op.
CREATE TABLE IF NOT EXISTS ingest_batches (
    batch_id    TEXT        PRIMARY KEY,
    kind        TEXT        NOT NULL,
    row_count   INTEGER     NOT NULL,
    applied_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE IF NOT EXISTS dead_letters (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    kind        TEXT        NOT NULL DEFAULT '',
    source      TEXT        NOT NULL DEFAULT '',
    reason      TEXT        NOT NULL,
    raw         TEXT        NOT NULL
);
