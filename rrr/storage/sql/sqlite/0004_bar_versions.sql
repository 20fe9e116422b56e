-- Bar versions: a bar is replaced only by a newer version of itself (rrr/storage/base.py).
-- version_time is when the vendor's version of the bar was received (the caller's version_ms),
-- or the time of the write when the caller cannot say. Rows written before this migration keep
-- NULL and stand at their updated_at, the time they were written: nothing is rewritten here.
ALTER TABLE crypto_aggregates ADD COLUMN version_time INTEGER;

-- Dead letters no store refuses (rrr/storage/dead_letters.py): NULL means kind, source,
-- reason and raw are the text as it was set aside; 'unicode_escape' means each is written in
-- Python's unicode_escape codec because it held what a database cannot (a NUL, a lone
-- surrogate, a character outside the database's encoding).
ALTER TABLE dead_letters ADD COLUMN text_encoding TEXT;
