/** Schema of the SQLite store; statements are idempotent so every start can run them. */
export const SCHEMA = `
CREATE TABLE IF NOT EXISTS jobs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  target_phid TEXT NOT NULL UNIQUE,
  repository_uri TEXT NOT NULL,
  ref TEXT NOT NULL,
  commit_hash TEXT NOT NULL,
  labels TEXT NOT NULL,
  meta TEXT NOT NULL,
  state TEXT NOT NULL,
  result TEXT,
  reason TEXT NOT NULL DEFAULT '',
  exit_code INTEGER,
  agent TEXT,
  attempt INTEGER NOT NULL DEFAULT 0,
  lease_expires_at INTEGER,
  created_at INTEGER NOT NULL,
  started_at INTEGER,
  finished_at INTEGER,
  log_bytes INTEGER NOT NULL DEFAULT 0,
  log_sha256 TEXT NOT NULL DEFAULT '',
  cancel_reason TEXT NOT NULL DEFAULT '',
  cancel_silent INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_by_state ON jobs (state, id);
CREATE INDEX IF NOT EXISTS jobs_by_agent ON jobs (agent, state);

CREATE TABLE IF NOT EXISTS outbox (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  job_id INTEGER NOT NULL REFERENCES jobs (id),
  target_phid TEXT NOT NULL,
  method TEXT NOT NULL,
  params TEXT NOT NULL,
  state TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_attempt_at INTEGER NOT NULL,
  last_error TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL,
  sent_at INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (state, next_attempt_at);
CREATE INDEX IF NOT EXISTS outbox_by_target ON outbox (target_phid, state, id);
CREATE INDEX IF NOT EXISTS outbox_by_job ON outbox (job_id);

-- Logs of up to 64 KiB (see LogStore): their chunks, by byte offset. Larger logs are files.
CREATE TABLE IF NOT EXISTS log_chunks (
  job_id INTEGER NOT NULL,
  offset INTEGER NOT NULL,
  data BLOB NOT NULL,
  PRIMARY KEY (job_id, offset)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS agents (
  name TEXT PRIMARY KEY,
  labels TEXT NOT NULL,
  capacity INTEGER NOT NULL,
  version TEXT NOT NULL,
  connected INTEGER NOT NULL,
  last_seen INTEGER NOT NULL
);
`;
