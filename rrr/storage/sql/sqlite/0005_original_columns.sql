-- rrr schema v5: the same columns as PostgreSQL's (rrr/storage/sql/postgres/0005), so a file
-- made by rrr can be copied into a PostgreSQL with the same columns.
--
-- Tick tables and market_sentiment: `id` made by the database (no insert names it) and
-- `created_at` (rrr's inserted_at renamed). system_events: created_at. SQLite can neither
-- change a primary key nor add a column whose default is not a constant, so each table is
-- rebuilt: created beside the old one, filled from it (rows keep their created_at, events
-- their id; ids are new), and renamed over it.
--
-- Chosen for the cost of a write (bench.store, issue 14): id is 128 random bits as 32 hex
-- digits, which PostgreSQL's uuid type reads as they are; a uuid4 in its hyphenated form
-- takes ten function calls per row in SQLite and cost a quarter of the insert rate, this one
-- a few per cent. In the tick tables the natural key stays the clustered primary key
-- (WITHOUT ROWID) and id has no index: an index on random ids halved the insert rate, and
-- nothing of rrr's looks a row up by its id (in PostgreSQL, where users' queries do, id is
-- the primary key).

CREATE TABLE crypto_trades_v5 (
    id            TEXT    NOT NULL DEFAULT (lower(hex(randomblob(16)))),
    ticker        TEXT    NOT NULL,
    exchange_id   INTEGER NOT NULL,
    trade_id      TEXT    NOT NULL,
    price         REAL    NOT NULL CHECK (price > 0),
    size          REAL    NOT NULL CHECK (size >= 0),
    conditions    TEXT    NOT NULL DEFAULT '[]',
    event_time    INTEGER NOT NULL,
    received_time INTEGER,
    source        TEXT    NOT NULL,
    created_at    INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    CONSTRAINT crypto_trades_natural_key PRIMARY KEY (ticker, exchange_id, trade_id)
) WITHOUT ROWID;
INSERT INTO crypto_trades_v5 (ticker, exchange_id, trade_id, price, size, conditions, event_time,
                              received_time, source, created_at)
    SELECT ticker, exchange_id, trade_id, price, size, conditions, event_time, received_time,
           source, inserted_at FROM crypto_trades;
DROP TABLE crypto_trades;
ALTER TABLE crypto_trades_v5 RENAME TO crypto_trades;
CREATE INDEX crypto_trades_ticker_time ON crypto_trades (ticker, event_time);

CREATE TABLE crypto_quotes_v5 (
    id            TEXT    NOT NULL DEFAULT (lower(hex(randomblob(16)))),
    ticker        TEXT    NOT NULL,
    exchange_id   INTEGER NOT NULL,
    bid_price     REAL    NOT NULL CHECK (bid_price > 0),
    bid_size      REAL    NOT NULL CHECK (bid_size >= 0),
    ask_price     REAL    NOT NULL CHECK (ask_price > 0),
    ask_size      REAL    NOT NULL CHECK (ask_size >= 0),
    event_time    INTEGER NOT NULL,
    received_time INTEGER,
    source        TEXT    NOT NULL,
    created_at    INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    CONSTRAINT crypto_quotes_natural_key
        PRIMARY KEY (ticker, exchange_id, event_time, bid_price, bid_size, ask_price, ask_size)
) WITHOUT ROWID;
INSERT INTO crypto_quotes_v5 (ticker, exchange_id, bid_price, bid_size, ask_price, ask_size, event_time,
                              received_time, source, created_at)
    SELECT ticker, exchange_id, bid_price, bid_size, ask_price, ask_size, event_time,
           received_time, source, inserted_at FROM crypto_quotes;
DROP TABLE crypto_quotes;
ALTER TABLE crypto_quotes_v5 RENAME TO crypto_quotes;
CREATE INDEX crypto_quotes_ticker_time ON crypto_quotes (ticker, event_time);

CREATE TABLE crypto_aggregates_v5 (
    id            TEXT    NOT NULL DEFAULT (lower(hex(randomblob(16)))),
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
    updated_at    INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    version_time  INTEGER,
    created_at    INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    CONSTRAINT crypto_aggregates_natural_key PRIMARY KEY (ticker, timeframe, event_time)
) WITHOUT ROWID;
INSERT INTO crypto_aggregates_v5 (ticker, timeframe, event_time, end_time, open, high, low, close, volume,
                                  vwap, trade_count, source, updated_at, version_time, created_at)
    SELECT ticker, timeframe, event_time, end_time, open, high, low, close, volume, vwap,
           trade_count, source, updated_at, version_time, inserted_at FROM crypto_aggregates;
DROP TABLE crypto_aggregates;
ALTER TABLE crypto_aggregates_v5 RENAME TO crypto_aggregates;

CREATE TABLE market_sentiment_v5 (
    id            TEXT    NOT NULL PRIMARY KEY DEFAULT (lower(hex(randomblob(16)))),
    asset           TEXT    NOT NULL,
    source          TEXT    NOT NULL,
    sentiment_label TEXT    NOT NULL CHECK (sentiment_label IN ('bullish', 'neutral', 'bearish')),
    sentiment_score REAL    NOT NULL CHECK (sentiment_score BETWEEN -1 AND 1),
    confidence      REAL    NOT NULL CHECK (confidence BETWEEN 0 AND 1),
    text            TEXT    NOT NULL DEFAULT '',
    metadata        TEXT    NOT NULL DEFAULT '{}',
    event_time      INTEGER NOT NULL,
    interval_start  INTEGER NOT NULL,
    created_at    INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)),
    UNIQUE (asset, source, interval_start)
);
INSERT INTO market_sentiment_v5 (asset, source, sentiment_label, sentiment_score, confidence, text,
                                 metadata, event_time, interval_start)
    SELECT asset, source, sentiment_label, sentiment_score, confidence, text, metadata,
           event_time, interval_start FROM market_sentiment;
DROP TABLE market_sentiment;
ALTER TABLE market_sentiment_v5 RENAME TO market_sentiment;
CREATE INDEX market_sentiment_asset_time ON market_sentiment (asset, event_time);

CREATE TABLE system_events_v5 (
    id          INTEGER PRIMARY KEY,
    event_time  INTEGER NOT NULL,
    component   TEXT    NOT NULL,
    event_type  TEXT    NOT NULL,
    severity    TEXT    NOT NULL CHECK (severity IN ('info', 'warning', 'error', 'critical')),
    message     TEXT    NOT NULL,
    details     TEXT    NOT NULL DEFAULT '{}',
    dedupe_key  TEXT    UNIQUE,
    created_at  INTEGER NOT NULL DEFAULT (CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER))
);
INSERT INTO system_events_v5 (id, event_time, component, event_type, severity, message, details,
                              dedupe_key)
    SELECT id, event_time, component, event_type, severity, message, details, dedupe_key
    FROM system_events;
DROP TABLE system_events;
ALTER TABLE system_events_v5 RENAME TO system_events;
CREATE INDEX system_events_component_time ON system_events (component, event_time);
