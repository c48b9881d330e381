-- Events: one row per event, numbered per job from 1.
CREATE TABLE events (
    job_id  TEXT NOT NULL,
    id      INTEGER NOT NULL,
    ts      INTEGER NOT NULL, -- microseconds since the Unix epoch
    body    TEXT NOT NULL,    -- the AgentEvent as JSON
    PRIMARY KEY (job_id, id)
) WITHOUT ROWID;
