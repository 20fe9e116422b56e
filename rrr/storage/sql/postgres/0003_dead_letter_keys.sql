-- A dead letter written outside a batch transaction (a redelivered task's) must not be written
-- twice: its content key, set by the writer, is unique. Letters written inside a batch's
-- transaction are already once-only through the batch id and may leave it NULL.
ALTER TABLE dead_letters ADD COLUMN IF NOT EXISTS dedupe_key TEXT;
CREATE UNIQUE INDEX IF NOT EXISTS dead_letters_dedupe ON dead_letters (dedupe_key);
