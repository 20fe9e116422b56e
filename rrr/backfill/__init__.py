"""Historical backfill: ``plan`` (pure: request -> chunks), ``chunks`` (fetch one chunk into a
store, idempotently), ``repair`` (fill a gap the stream left), ``progress`` (what to show)."""
