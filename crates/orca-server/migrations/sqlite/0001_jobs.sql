-- Jobs: the public job as JSON in `body`, the secret token apart, and the filter columns.
CREATE TABLE jobs (
    id          TEXT PRIMARY KEY NOT NULL,
    status      TEXT NOT NULL,
    agent_type  TEXT NOT NULL,
    repo_url    TEXT,
    created_at  INTEGER NOT NULL, -- microseconds since the Unix epoch
    body        TEXT NOT NULL,
    git_token   TEXT
);
CREATE INDEX jobs_created ON jobs (created_at DESC, id DESC);
CREATE INDEX jobs_status_created ON jobs (status, created_at DESC);
CREATE INDEX jobs_agent_created ON jobs (agent_type, created_at DESC);
CREATE INDEX jobs_repo_created ON jobs (repo_url, created_at DESC);
