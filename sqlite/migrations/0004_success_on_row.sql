-- A delivery's successful attempt is kept on its own row instead of in
-- attempts: a first-time success, nearly every delivery, then writes no
-- attempt row and no attempts_delivery entry. The attempt's status code and
-- error are the row's last_status_code and last_error; its number is the
-- row's attempts. ok_started_at is NULL when the row holds none. Queueing a
-- delivery again (retry, replay) first moves its success into attempts.
ALTER TABLE deliveries ADD COLUMN ok_started_at INTEGER;
ALTER TABLE deliveries ADD COLUMN ok_duration_ns INTEGER NOT NULL DEFAULT 0;
ALTER TABLE deliveries ADD COLUMN ok_response TEXT NOT NULL DEFAULT '';
