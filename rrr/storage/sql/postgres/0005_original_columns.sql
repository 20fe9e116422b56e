-- rrr schema v5: a superset of the original system's documented tables (issue 14), so its
-- users' queries and dashboards keep working on rows rrr writes.
--
-- 1. Tick tables: `id UUID` primary key (made by the database, so no insert names it) and
--    `created_at` (rrr's inserted_at, renamed: one name for one thing). The natural key that
--    was the primary key stays as the UNIQUE constraint <table>_natural_key, so every
--    ON CONFLICT (natural key) keeps working. Trade conditions INTEGER[], as documented.
-- 2. market_sentiment: `id UUID` instead of a BIGINT identity (rows get new ids: nothing of
--    rrr's refers to them), NUMERIC score and confidence (their checks are kept), created_at.
-- 3. system_events: created_at.
--
-- Every step looks at the catalog first: a table adopted from the original system (which has
-- id and created_at already) or a database migrated by hand is left as it is where it already
-- has the target shape, and a column a user added is never touched.

DO $$
DECLARE
    tick     record;
    rel      regclass;
    pk_name  text;
    pk_cols  text[];
BEGIN
    FOR tick IN
        SELECT * FROM (VALUES
            ('crypto_trades', ARRAY['ticker', 'exchange_id', 'trade_id']),
            ('crypto_quotes', ARRAY['ticker', 'exchange_id', 'event_time', 'bid_price',
                                    'bid_size', 'ask_price', 'ask_size']),
            ('crypto_aggregates', ARRAY['ticker', 'timeframe', 'event_time'])
        ) AS t(name, natural_key)
    LOOP
        rel := to_regclass(tick.name);

        IF NOT EXISTS (SELECT FROM pg_attribute
                       WHERE attrelid = rel AND attname = 'created_at' AND NOT attisdropped) THEN
            IF EXISTS (SELECT FROM pg_attribute
                       WHERE attrelid = rel AND attname = 'inserted_at' AND NOT attisdropped) THEN
                EXECUTE format('ALTER TABLE %I RENAME COLUMN inserted_at TO created_at', tick.name);
            ELSE
                EXECUTE format('ALTER TABLE %I ADD COLUMN created_at TIMESTAMPTZ NOT NULL'
                               ' DEFAULT now()', tick.name);
            END IF;
        END IF;

        -- A volatile default: every existing row gets its own id (one rewrite of the table).
        EXECUTE format('ALTER TABLE %I ADD COLUMN IF NOT EXISTS id UUID NOT NULL'
                       ' DEFAULT gen_random_uuid()', tick.name);

        -- The natural key as a UNIQUE constraint, unless one on exactly its columns exists
        -- (under any name: an adoption may have added it).
        IF NOT EXISTS (
            SELECT FROM pg_constraint AS c
            WHERE c.conrelid = rel AND c.contype = 'u'
              AND (SELECT array_agg(a.attname::text ORDER BY a.attname) FROM pg_attribute AS a
                   WHERE a.attrelid = rel AND a.attnum = ANY (c.conkey))
                  = (SELECT array_agg(k ORDER BY k) FROM unnest(tick.natural_key) AS k)
        ) THEN
            EXECUTE format('ALTER TABLE %I ADD CONSTRAINT %I UNIQUE (%s)', tick.name,
                           tick.name || '_natural_key',
                           (SELECT string_agg(quote_ident(k), ', ')
                            FROM unnest(tick.natural_key) AS k));
        END IF;

        -- The primary key moves to id (the natural key is unique above, so nothing is
        -- unguarded in between; all of it is one transaction anyway).
        SELECT c.conname, (SELECT array_agg(a.attname::text) FROM pg_attribute AS a
                           WHERE a.attrelid = rel AND a.attnum = ANY (c.conkey))
        INTO pk_name, pk_cols
        FROM pg_constraint AS c WHERE c.conrelid = rel AND c.contype = 'p';
        IF pk_cols IS DISTINCT FROM ARRAY['id'] THEN
            IF pk_name IS NOT NULL THEN
                EXECUTE format('ALTER TABLE %I DROP CONSTRAINT %I', tick.name, pk_name);
            END IF;
            EXECUTE format('ALTER TABLE %I ADD PRIMARY KEY (id)', tick.name);
        END IF;
    END LOOP;

    IF (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
        WHERE attrelid = to_regclass('crypto_trades') AND attname = 'conditions'
          AND NOT attisdropped) = 'smallint[]' THEN
        ALTER TABLE crypto_trades ALTER COLUMN conditions TYPE INTEGER[];
    END IF;

    IF (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
        WHERE attrelid = to_regclass('market_sentiment') AND attname = 'id'
          AND NOT attisdropped) = 'bigint' THEN
        -- An identity column cannot change type: it stops being one first.
        ALTER TABLE market_sentiment ALTER COLUMN id DROP IDENTITY IF EXISTS;
        ALTER TABLE market_sentiment
            ALTER COLUMN id TYPE UUID USING gen_random_uuid(),
            ALTER COLUMN id SET DEFAULT gen_random_uuid();
    END IF;
    IF (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
        WHERE attrelid = to_regclass('market_sentiment') AND attname = 'sentiment_score'
          AND NOT attisdropped) = 'double precision' THEN
        ALTER TABLE market_sentiment ALTER COLUMN sentiment_score TYPE NUMERIC;
    END IF;
    IF (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
        WHERE attrelid = to_regclass('market_sentiment') AND attname = 'confidence'
          AND NOT attisdropped) = 'double precision' THEN
        ALTER TABLE market_sentiment ALTER COLUMN confidence TYPE NUMERIC;
    END IF;
END
$$;

ALTER TABLE market_sentiment
    ADD COLUMN IF NOT EXISTS created_at TIMESTAMPTZ NOT NULL DEFAULT now();
ALTER TABLE system_events
    ADD COLUMN IF NOT EXISTS created_at TIMESTAMPTZ NOT NULL DEFAULT now();

-- PostgREST caches the schema: tell it about the new columns (a no-op without PostgREST).
NOTIFY pgrst, 'reload schema';
