-- `GET /api/v1/jobs/:id` lists a job's retries (`retryOf` in the body): an index lookup, not a
-- scan. Only retries have a non-null `retryOf`, so the index stays small.
CREATE INDEX jobs_retry_of ON jobs (json_extract(body, '$.retryOf'), created_at DESC, id DESC)
    WHERE json_extract(body, '$.retryOf') IS NOT NULL;
