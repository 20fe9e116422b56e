-- rrr schema v1 for SQLite. SQLite has no time type: times are INTEGER Unix milliseconds (UTC).
-- Prices are REAL: the double the vendor's JSON decoded to, whose shortest repr is the
-- vendor's decimal text; nothing is computed on them before they are stored.

CREATE TABLE IF NOT EXISTS crypto_trades (
    ticker        TEXT    NOT NULL,
    exchange_id   INTEGER NOT NULL,
    trade_id      TEXT    NOT NULL,
    price         REAL    NOT NULL CHECK (price > 0),
    size          REAL    NOT NULL CHECK (size >= 0),
    conditions    TEXT    NOT NULL DEFAULT '[]',
    event_time    INTEGER NOT NULL,
    received_time INTEGER,
    source        TEXT    NOT NULL,
    inserted_at   INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    PRIMARY KEY (ticker, exchange_id, trade_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS crypto_trades_ticker_time ON crypto_trades (ticker, event_time);

CREATE TABLE IF NOT EXISTS crypto_quotes (
    ticker        TEXT    NOT NULL,
    exchange_id   INTEGER NOT NULL,
    bid_price     REAL    NOT NULL CHECK (bid_price > 0),
    bid_size      REAL    NOT NULL CHECK (bid_size >= 0),
    ask_price     REAL    NOT NULL CHECK (ask_price > 0),
    ask_size      REAL    NOT NULL CHECK (ask_size >= 0),
    event_time    INTEGER NOT NULL,
    received_time INTEGER,
    source        TEXT    NOT NULL,
    inserted_at   INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    PRIMARY KEY (ticker, exchange_id, event_time, bid_price, bid_size, ask_price, ask_size)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS crypto_quotes_ticker_time ON crypto_quotes (ticker, event_time);

CREATE TABLE IF NOT EXISTS crypto_aggregates (
    ticker        TEXT    NOT NULL,
    timeframe     TEXT    NOT NULL,
    event_time    INTEGER NOT NULL,
    end_time      INTEGER NOT NULL,
    open          REAL    NOT NULL CHECK (open > 0),
    high          REAL    NOT NULL CHECK (high > 0),
    low           REAL    NOT NULL CHECK (low > 0),
    close         REAL    NOT NULL CHECK (close > 0),
    volume        REAL    NOT NULL CHECK (volume >= 0),
    vwap          REAL,
    trade_count   INTEGER,
    source        TEXT    NOT NULL,
    inserted_at   INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    updated_at    INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    PRIMARY KEY (ticker, timeframe, event_time)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS market_sentiment (
    id              INTEGER PRIMARY KEY,
    asset           TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    sentiment_label TEXT    NOT NULL CHECK (sentiment_label IN ('bullish', 'neutral', 'bearish')),
    sentiment_score REAL    NOT NULL CHECK (sentiment_score BETWEEN -1 AND 1),
    confidence      REAL    NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    text            TEXT    NOT NULL DEFAULT '',
    metadata        TEXT    NOT NULL DEFAULT '{}',
    event_time      INTEGER NOT NULL,
    interval_start  INTEGER NOT NULL,
    UNIQUE (asset, source, interval_start)
);
CREATE INDEX IF NOT EXISTS market_sentiment_asset_time ON market_sentiment (asset, event_time);

CREATE TABLE IF NOT EXISTS system_events (
    id          INTEGER PRIMARY KEY,
    event_time  INTEGER NOT NULL,
    component   TEXT    NOT NULL,
    event_type  TEXT    NOT NULL,
    severity    TEXT    NOT NULL CHECK (severity IN ('info', 'warning', 'error', 'critical')),
    message     TEXT    NOT NULL,
    details     TEXT    NOT NULL DEFAULT '{}',
    dedupe_key  TEXT    UNIQUE
);
CREATE INDEX IF NOT EXISTS system_events_component_time ON system_events (component, event_time);

CREATE TABLE IF NOT EXISTS backfill_chunks (
    chunk_id     TEXT    PRIMARY KEY,
    plan_id      TEXT    NOT NULL,
    ticker       TEXT    NOT NULL,
    multiplier   INTEGER NOT NULL,
    timespan     TEXT    NOT NULL,
    start_time   INTEGER NOT NULL,
    end_time     INTEGER NOT NULL,
    status       TEXT    NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'running', 'done', 'failed')),
    bars_stored  INTEGER NOT NULL DEFAULT 0,
    attempts     INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    created_at   INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    updated_at   INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    started_at   INTEGER,
    finished_at  INTEGER
);
CREATE INDEX IF NOT EXISTS backfill_chunks_plan ON backfill_chunks (plan_id, status);

CREATE TABLE IF NOT EXISTS ingest_batches (
    batch_id    TEXT    PRIMARY KEY,
    kind        TEXT    NOT NULL,
    row_count   INTEGER NOT NULL,
    applied_at  INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS dead_letters (
    id          INTEGER PRIMARY KEY,
    created_at  INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    kind        TEXT    NOT NULL DEFAULT '',
    source      TEXT    NOT NULL DEFAULT '',
    reason      TEXT    NOT NULL,
    raw         TEXT    NOT NULL
);
