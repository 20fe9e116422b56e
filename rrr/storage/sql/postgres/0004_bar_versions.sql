-- rrr schema v4.
--
-- 1. Bar versions: a bar is replaced only by a newer version of itself (rrr/storage/base.py).
--    version_time is when the vendor's version of the bar was received (the caller's
--    version_ms), or the time of the write when the caller cannot say. Rows written before
--    this migration keep NULL and stand at their updated_at, the time they were written, so
--    nothing is rewritten here (an UPDATE of every bar would rewrite the whole table).
-- 2. Dead letters no store refuses (rrr/storage/dead_letters.py): text_encoding NULL means
--    kind, source, reason and raw are the text as it was set aside; 'unicode_escape' means
--    each is written in Python's unicode_escape codec (ASCII) because it held what the
--    database cannot (a NUL, a lone surrogate, a character outside its encoding).
-- 3. rrr_apply_batch (0002) again, with both: CREATE OR REPLACE keeps its grants.

ALTER TABLE crypto_aggregates ADD COLUMN IF NOT EXISTS version_time TIMESTAMPTZ;
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS text_encoding TEXT;

CREATE OR REPLACE FUNCTION rrr_apply_batch(batch jsonb) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
AS $$
DECLARE
    batch_kind text := batch->>'kind';
    n_stored   integer := 0;
    n_rejected integer := jsonb_array_length(coalesce(batch->'dead_letters', '[]'::jsonb));
    -- The version of the batch's bars: when the vendor's version was received, else now.
    bar_version timestamptz := coalesce(
        'epoch'::timestamptz + (batch->>'version_ms')::bigint * interval '1 millisecond', now());
BEGIN
    INSERT INTO ingest_batches (batch_id, kind, row_count)
    VALUES (batch->>'id', batch_kind, (batch->>'row_count')::integer)
    ON CONFLICT (batch_id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN jsonb_build_object('applied', false, 'stored', 0, 'rejected', 0);
    END IF;

    IF batch_kind = 'trades' THEN
        -- [ticker, exchange_id, trade_id, price, size, conditions, ts_ms, received_ms, source]
        INSERT INTO crypto_trades (ticker, exchange_id, trade_id, price, size, conditions,
                                   event_time, received_time, source)
        SELECT r->>0, (r->>1)::integer, r->>2, (r->>3)::numeric, (r->>4)::numeric,
               ARRAY(SELECT jsonb_array_elements_text(r->5)::smallint),
               'epoch'::timestamptz + (r->>6)::bigint * interval '1 millisecond',
               'epoch'::timestamptz + (r->>7)::bigint * interval '1 millisecond',
               r->>8
        FROM jsonb_array_elements(batch->'rows') AS r
        ON CONFLICT DO NOTHING;
    ELSIF batch_kind = 'quotes' THEN
        -- [ticker, exchange_id, bid_price, bid_size, ask_price, ask_size, ts_ms, received_ms,
        --  source]
        INSERT INTO crypto_quotes (ticker, exchange_id, bid_price, bid_size, ask_price, ask_size,
                                   event_time, received_time, source)
        SELECT r->>0, (r->>1)::integer, (r->>2)::numeric, (r->>3)::numeric, (r->>4)::numeric,
               (r->>5)::numeric,
               'epoch'::timestamptz + (r->>6)::bigint * interval '1 millisecond',
               'epoch'::timestamptz + (r->>7)::bigint * interval '1 millisecond',
               r->>8
        FROM jsonb_array_elements(batch->'rows') AS r
        ON CONFLICT DO NOTHING;
    ELSIF batch_kind = 'bars' THEN
        -- [ticker, timeframe, open, high, low, close, volume, vwap, trade_count, start_ms,
        --  end_ms, source]; one row per key (the client keeps the last correction), because
        -- one INSERT ... ON CONFLICT DO UPDATE cannot touch a row twice. A stored bar is
        -- replaced only by a version at least as new (a row from before versions: its
        -- updated_at).
        INSERT INTO crypto_aggregates (ticker, timeframe, open, high, low, close, volume, vwap,
                                       trade_count, event_time, end_time, source, version_time)
        SELECT r->>0, r->>1, (r->>2)::numeric, (r->>3)::numeric, (r->>4)::numeric,
               (r->>5)::numeric, (r->>6)::numeric, (r->>7)::numeric, (r->>8)::integer,
               'epoch'::timestamptz + (r->>9)::bigint * interval '1 millisecond',
               'epoch'::timestamptz + (r->>10)::bigint * interval '1 millisecond',
               r->>11, bar_version
        FROM jsonb_array_elements(batch->'rows') AS r
        ON CONFLICT (ticker, timeframe, event_time) DO UPDATE SET
            open = excluded.open, high = excluded.high, low = excluded.low,
            close = excluded.close, volume = excluded.volume, vwap = excluded.vwap,
            trade_count = excluded.trade_count, end_time = excluded.end_time,
            source = excluded.source, version_time = excluded.version_time, updated_at = now()
        WHERE excluded.version_time
              >= coalesce(crypto_aggregates.version_time, crypto_aggregates.updated_at);
    ELSE
        RAISE EXCEPTION 'unknown batch kind %', batch_kind USING ERRCODE = '22023';
    END IF;
    GET DIAGNOSTICS n_stored = ROW_COUNT;

    -- Letters come escaped where the database could not hold them (text_encoding).
    INSERT INTO dead_letters (kind, source, reason, raw, text_encoding)
    SELECT d->>'kind', d->>'source', d->>'reason', d->>'raw', d->>'text_encoding'
    FROM jsonb_array_elements(coalesce(batch->'dead_letters', '[]'::jsonb)) AS d;

    RETURN jsonb_build_object('applied', true, 'stored', n_stored, 'rejected', n_rejected);
END
$$;

-- PostgREST caches the schema: tell it about the new columns (a no-op without PostgREST).
NOTIFY pgrst, 'reload schema';
