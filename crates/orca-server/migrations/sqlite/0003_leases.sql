-- Leases: which backend instance is responsible for a claimed job, and until when
-- (microseconds since the Unix epoch). Jobs left active by an older version get an expired
-- lease, so the next start-up reclaims them.
ALTER TABLE jobs ADD COLUMN owner TEXT;
ALTER TABLE jobs ADD COLUMN lease_until INTEGER;
UPDATE jobs SET owner = '(unknown)', lease_until = 0 WHERE status IN ('scheduled', 'running');
CREATE INDEX jobs_leases ON jobs (lease_until) WHERE owner IS NOT NULL;
