-- rrr schema v2: what the Supabase REST store needs, harmless on plain PostgreSQL.
--
-- 1. rrr_apply_batch(batch jsonb): one batch of trades, quotes or bars applied in ONE
--    transaction (PostgREST runs each HTTP request in its own transaction), so the batch id in
--    ingest_batches and its rows are never half-applied and a redelivered batch is a no-op.
--    Rows arrive as JSON arrays in the field order of rrr.models (Trade, Quote, Bar). Prices are
--    JSON numbers, which PostgreSQL parses as NUMERIC: the decimal the client wrote is stored.
-- 2. rrr_latest_event_times(): newest event time per (kind, ticker); PostgREST has no GROUP BY.
-- 3. The backfill chunk writes (rrr_upsert_chunks, rrr_claim_chunk, rrr_touch_chunk,
--    rrr_finish_chunk, rrr_fail_chunk): the same statements as PostgresStore's, because a claim
--    must be one atomic UPDATE with attempts = attempts + 1, which a PostgREST PATCH cannot say.
--    Times are the caller's clock (now_ms), as in the other stores.
-- 4. Row-level security for Supabase: only the service_role may read or write. Guarded by a
--    pg_roles check, so plain PostgreSQL (no service_role) keeps its tables exactly as before.
--
-- SET search_path FROM CURRENT: the functions keep the schema they were created in, whatever
-- search_path the caller has (and Supabase's linter wants a fixed search_path).

CREATE OR REPLACE FUNCTION rrr_apply_batch(batch jsonb) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
AS $$
DECLARE
    batch_kind text := batch->>'kind';
    n_stored   integer := 0;
    n_rejected integer := jsonb_array_length(coalesce(batch->'dead_letters', '[]'::jsonb));
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
        -- one INSERT ... ON CONFLICT DO UPDATE cannot touch a row twice.
        INSERT INTO crypto_aggregates (ticker, timeframe, open, high, low, close, volume, vwap,
                                       trade_count, event_time, end_time, source)
        SELECT r->>0, r->>1, (r->>2)::numeric, (r->>3)::numeric, (r->>4)::numeric,
               (r->>5)::numeric, (r->>6)::numeric, (r->>7)::numeric, (r->>8)::integer,
               'epoch'::timestamptz + (r->>9)::bigint * interval '1 millisecond',
               'epoch'::timestamptz + (r->>10)::bigint * interval '1 millisecond',
               r->>11
        FROM jsonb_array_elements(batch->'rows') AS r
        ON CONFLICT (ticker, timeframe, event_time) DO UPDATE SET
            open = excluded.open, high = excluded.high, low = excluded.low,
            close = excluded.close, volume = excluded.volume, vwap = excluded.vwap,
            trade_count = excluded.trade_count, end_time = excluded.end_time,
            source = excluded.source, updated_at = now();
    ELSE
        RAISE EXCEPTION 'unknown batch kind %', batch_kind USING ERRCODE = '22023';
    END IF;
    GET DIAGNOSTICS n_stored = ROW_COUNT;

    INSERT INTO dead_letters (kind, source, reason, raw)
    SELECT d->>'kind', d->>'source', d->>'reason', d->>'raw'
    FROM jsonb_array_elements(coalesce(batch->'dead_letters', '[]'::jsonb)) AS d;

    RETURN jsonb_build_object('applied', true, 'stored', n_stored, 'rejected', n_rejected);
END
$$;

CREATE OR REPLACE FUNCTION rrr_latest_event_times()
    RETURNS TABLE (kind text, ticker text, newest_ms bigint)
    LANGUAGE sql STABLE
    SET search_path FROM CURRENT
AS $$
    SELECT 'trades', t.ticker, (extract(epoch FROM max(t.event_time)) * 1000)::bigint
    FROM crypto_trades AS t GROUP BY t.ticker
    UNION ALL
    SELECT 'quotes', q.ticker, (extract(epoch FROM max(q.event_time)) * 1000)::bigint
    FROM crypto_quotes AS q GROUP BY q.ticker
    UNION ALL
    SELECT 'bars', a.ticker, (extract(epoch FROM max(a.event_time)) * 1000)::bigint
    FROM crypto_aggregates AS a GROUP BY a.ticker
$$;

CREATE OR REPLACE FUNCTION rrr_upsert_chunks(chunks jsonb) RETURNS integer
    LANGUAGE plpgsql
    SET search_path FROM CURRENT
AS $$
DECLARE
    n_new integer;
BEGIN
    -- [chunk_id, plan_id, ticker, multiplier, timespan, start_ms, end_ms] (Chunk.row())
    INSERT INTO backfill_chunks (chunk_id, plan_id, ticker, multiplier, timespan, start_time,
                                 end_time)
    SELECT c->>0, c->>1, c->>2, (c->>3)::integer, c->>4,
           'epoch'::timestamptz + (c->>5)::bigint * interval '1 millisecond',
           'epoch'::timestamptz + (c->>6)::bigint * interval '1 millisecond'
    FROM jsonb_array_elements(chunks) AS c
    ON CONFLICT (chunk_id) DO NOTHING;
    GET DIAGNOSTICS n_new = ROW_COUNT;
    -- An existing chunk keeps its status and progress but moves to the newest plan naming it.
    UPDATE backfill_chunks AS b SET plan_id = c->>1
    FROM jsonb_array_elements(chunks) AS c
    WHERE b.chunk_id = c->>0 AND b.plan_id <> c->>1;
    RETURN n_new;
END
$$;

-- pending/failed -> running, or take over a running chunk not touched for lease_ms; returns
-- the attempt number, NULL when not claimed. One UPDATE: of two concurrent claims, the second
-- re-checks the row after the first commits and loses.
CREATE OR REPLACE FUNCTION rrr_claim_chunk(target_chunk text, now_ms bigint, lease_ms bigint)
    RETURNS integer
    LANGUAGE sql
    SET search_path FROM CURRENT
AS $$
    UPDATE backfill_chunks
    SET status = 'running', attempts = attempts + 1,
        started_at = 'epoch'::timestamptz + now_ms * interval '1 millisecond',
        updated_at = 'epoch'::timestamptz + now_ms * interval '1 millisecond',
        finished_at = NULL
    WHERE chunk_id = target_chunk
      AND (status IN ('pending', 'failed')
           OR (status = 'running'
               AND updated_at < 'epoch'::timestamptz
                                + (now_ms - lease_ms) * interval '1 millisecond'))
    RETURNING attempts
$$;

CREATE OR REPLACE FUNCTION rrr_touch_chunk(target_chunk text, bars integer, now_ms bigint)
    RETURNS void
    LANGUAGE sql
    SET search_path FROM CURRENT
AS $$
    UPDATE backfill_chunks
    SET bars_stored = bars,
        updated_at = 'epoch'::timestamptz + now_ms * interval '1 millisecond'
    WHERE chunk_id = target_chunk AND status = 'running'
$$;

CREATE OR REPLACE FUNCTION rrr_finish_chunk(target_chunk text, bars integer, now_ms bigint)
    RETURNS void
    LANGUAGE sql
    SET search_path FROM CURRENT
AS $$
    UPDATE backfill_chunks
    SET status = 'done', bars_stored = bars, last_error = NULL,
        updated_at = 'epoch'::timestamptz + now_ms * interval '1 millisecond',
        finished_at = 'epoch'::timestamptz + now_ms * interval '1 millisecond'
    WHERE chunk_id = target_chunk
$$;

-- A done chunk stays done; retry puts it back to pending (a transient error), else failed.
CREATE OR REPLACE FUNCTION rrr_fail_chunk(target_chunk text, error_text text, now_ms bigint,
                                          retry boolean)
    RETURNS void
    LANGUAGE sql
    SET search_path FROM CURRENT
AS $$
    UPDATE backfill_chunks
    SET status = CASE WHEN retry THEN 'pending' ELSE 'failed' END,
        last_error = left(error_text, 2000),
        updated_at = 'epoch'::timestamptz + now_ms * interval '1 millisecond'
    WHERE chunk_id = target_chunk AND status <> 'done'
$$;

-- Functions are executable by PUBLIC by default; these are for the table owner and, on
-- Supabase, the service_role only (granted below).
REVOKE ALL ON FUNCTION rrr_apply_batch(jsonb), rrr_latest_event_times(),
    rrr_upsert_chunks(jsonb), rrr_claim_chunk(text, bigint, bigint),
    rrr_touch_chunk(text, integer, bigint), rrr_finish_chunk(text, integer, bigint),
    rrr_fail_chunk(text, text, bigint, boolean)
    FROM PUBLIC;

DO $$
DECLARE
    rrr_table text;
    api_role  text;
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'service_role') THEN
        RETURN;  -- plain PostgreSQL: no Supabase roles, nothing to lock down
    END IF;
    BEGIN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO service_role', current_schema());
    EXCEPTION WHEN insufficient_privilege THEN
        NULL;  -- not the schema's owner; Supabase grants public to service_role anyway
    END;
    GRANT EXECUTE ON FUNCTION rrr_apply_batch(jsonb), rrr_latest_event_times(),
        rrr_upsert_chunks(jsonb), rrr_claim_chunk(text, bigint, bigint),
        rrr_touch_chunk(text, integer, bigint), rrr_finish_chunk(text, integer, bigint),
        rrr_fail_chunk(text, text, bigint, boolean)
        TO service_role;
    FOREACH rrr_table IN ARRAY ARRAY[
        'crypto_trades', 'crypto_quotes', 'crypto_aggregates', 'market_sentiment',
        'system_events', 'backfill_chunks', 'ingest_batches', 'dead_letters', 'schema_migrations'
    ] LOOP
        -- RLS on, and one policy: the service_role may do everything. (On Supabase the
        -- service_role bypasses RLS anyway; the policy states the intent.) The table owner,
        -- used through DATABASE_URL, is not subject to RLS.
        EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', rrr_table);
        EXECUTE format('GRANT ALL ON TABLE %I TO service_role', rrr_table);
        EXECUTE format('DROP POLICY IF EXISTS rrr_service_role_all ON %I', rrr_table);
        EXECUTE format('CREATE POLICY rrr_service_role_all ON %I FOR ALL TO service_role'
                       ' USING (true) WITH CHECK (true)', rrr_table);
        -- Supabase grants every new table in public to anon and authenticated by default:
        -- take that back, so the anon key gets "permission denied" instead of an empty table.
        FOREACH api_role IN ARRAY ARRAY['anon', 'authenticated'] LOOP
            IF EXISTS (SELECT FROM pg_roles WHERE rolname = api_role) THEN
                EXECUTE format('REVOKE ALL ON TABLE %I FROM %I', rrr_table, api_role);
            END IF;
        END LOOP;
    END LOOP;
    FOREACH api_role IN ARRAY ARRAY['anon', 'authenticated'] LOOP
        IF EXISTS (SELECT FROM pg_roles WHERE rolname = api_role) THEN
            EXECUTE format('REVOKE ALL ON FUNCTION rrr_apply_batch(jsonb),'
                           ' rrr_latest_event_times(), rrr_upsert_chunks(jsonb),'
                           ' rrr_claim_chunk(text, bigint, bigint),'
                           ' rrr_touch_chunk(text, integer, bigint),'
                           ' rrr_finish_chunk(text, integer, bigint),'
                           ' rrr_fail_chunk(text, text, bigint, boolean) FROM %I', api_role);
        END IF;
    END LOOP;
END
$$;

-- PostgREST caches the schema: tell it about the new functions (a no-op without PostgREST).
NOTIFY pgrst, 'reload schema';
