-- Jobs: the public job as JSON in `body`, the secret token apart, copies of the columns the list
-- filters use, and the lease of the backend instance responsible for the job.
CREATE TABLE jobs (
    id          uuid PRIMARY KEY,
    status      text NOT NULL,
    agent_type  text NOT NULL,
    repo_url    text,
    created_at  timestamptz NOT NULL,
    body        jsonb NOT NULL,
    git_token   text,
    owner       text,
    lease_until timestamptz
);
-- The list, newest first, with and without each filter (each index also serves `since`).
CREATE INDEX jobs_created ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_status_created ON jobs (status, created_at DESC, id DESC);
CREATE INDEX jobs_agent_created ON jobs (agent_type, created_at DESC, id DESC);
CREATE INDEX jobs_repo_created ON jobs (repo_url, created_at DESC, id DESC);
-- The queue: only queued jobs, oldest first (claim_next).
CREATE INDEX jobs_queue ON jobs (created_at, id) WHERE status = 'queued';
-- Leases to watch: only jobs someone is responsible for (reclaim_expired).
CREATE INDEX jobs_leases ON jobs (lease_until) WHERE owner IS NOT NULL;
