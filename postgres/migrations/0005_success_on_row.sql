-- A delivery's successful attempt is kept on its own row instead of in
-- attempts (as the SQLite store's 0004): a first-time success, nearly every
-- delivery, then inserts no attempt row and no attempts index entry. The
-- attempt's status code and error are the row's last_status_code and
-- last_error; its number is the row's attempts. ok_started_at is NULL when
-- the row holds none. Queueing a delivery again (retry, replay) first moves
-- its success into attempts. Columns with constant defaults: no rewrite.
ALTER TABLE deliveries ADD COLUMN ok_started_at timestamptz;
ALTER TABLE deliveries ADD COLUMN ok_duration_ns bigint NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN ok_response text NOT NULL DEFAULT '';
