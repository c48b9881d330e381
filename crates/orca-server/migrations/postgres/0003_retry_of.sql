-- `GET /api/v1/jobs/:id` lists a job's retries (`retryOf` in the body): keep that an index
-- lookup at a million jobs. Only retries have the key, so the index stays small.
CREATE INDEX jobs_retry_of ON jobs ((body->>'retryOf'), created_at DESC, id DESC) WHERE body->>'retryOf' IS NOT NULL;
