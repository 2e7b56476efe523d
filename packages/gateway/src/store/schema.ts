import type { DatabaseSync } from "node:sqlite";
import { GatewayError } from "../errors.ts";

/**
 * One schema step. `up` is SQL run with `exec` inside the migration transaction, so it must not
 * contain BEGIN/COMMIT itself. A published migration is never edited: change the schema with a
 * new, higher version.
 */
export interface Migration {
  /** Positive integer; the list runs 1, 2, 3… with no gaps. Stored in `PRAGMA user_version`. */
  readonly version: number;
  readonly up: string;
}

// CHECK constraints mirror the TypeScript unions so rows can be read back with plain casts; widening
// a union later means a migration that rebuilds the table, which is the price of a trustworthy ledger.
export const migrations: readonly Migration[] = [
  {
    version: 1,
    up: `
CREATE TABLE sessions (
  session_key TEXT NOT NULL PRIMARY KEY,
  session_id TEXT NOT NULL,
  agent_id TEXT NOT NULL,
  label TEXT,
  created_via TEXT NOT NULL CHECK (created_via IN ('operator', 'run', 'implicit')),
  workspace_mode TEXT NOT NULL CHECK (workspace_mode IN ('ephemeral', 'agent', 'persistent', 'none')),
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  last_interaction_at INTEGER
);
CREATE INDEX sessions_by_updated ON sessions (updated_at, session_key);
CREATE INDEX sessions_by_agent_updated ON sessions (agent_id, updated_at, session_key);

CREATE TABLE messages (
  id TEXT NOT NULL PRIMARY KEY,
  session_key TEXT NOT NULL REFERENCES sessions (session_key) ON DELETE CASCADE,
  seq INTEGER NOT NULL CHECK (seq >= 1),
  role TEXT NOT NULL CHECK (role IN ('user', 'assistant', 'custom')),
  content TEXT NOT NULL CHECK (json_valid(content)),
  run_id TEXT,
  idempotency_key TEXT,
  created_at INTEGER NOT NULL
);
-- Also the child index the ON DELETE CASCADE lookup needs.
CREATE UNIQUE INDEX messages_by_session_seq ON messages (session_key, seq);

CREATE TABLE runs (
  run_id TEXT NOT NULL PRIMARY KEY,
  session_key TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('chat', 'agent')),
  input_hash TEXT NOT NULL,
  status TEXT NOT NULL CHECK (status IN ('running', 'ok', 'error', 'aborted', 'timeout')),
  summary TEXT,
  reply_text TEXT,
  error_message TEXT,
  started_at INTEGER NOT NULL,
  ended_at INTEGER,
  CHECK ((status = 'running') = (ended_at IS NULL))
);
CREATE INDEX runs_by_ended ON runs (ended_at);
CREATE INDEX runs_running ON runs (started_at) WHERE status = 'running';

CREATE TABLE leases (
  lease_id TEXT NOT NULL PRIMARY KEY,
  session_key TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('persistent', 'ephemeral', 'none')),
  mode TEXT NOT NULL CHECK (mode IN ('ephemeral', 'agent', 'persistent', 'none')),
  path TEXT,
  state TEXT NOT NULL CHECK (state IN ('acquiring', 'live', 'releasing', 'released', 'failed')),
  instance_id TEXT,
  dev TEXT,
  ino TEXT,
  created_at INTEGER NOT NULL,
  released_at INTEGER,
  release_reason TEXT,
  outcome TEXT,
  error TEXT
);
-- created_at (then the implicit rowid) matches the listing order, so filtered lists need no sort.
CREATE INDEX leases_by_state ON leases (state, created_at);
CREATE INDEX leases_by_session ON leases (session_key, created_at);
CREATE INDEX leases_by_instance ON leases (instance_id, created_at);
`,
  },
  {
    version: 2,
    // The random token every process of a run carries (OCGW_RUN_TOKEN) and the identity of the
    // gateway process that ran it (JSON: pid, host, boot, pid namespace, start time), so that a
    // later start can stop what the runs of a gateway proven dead left running; NULL for runs
    // recorded before they existed.
    up: `
ALTER TABLE runs ADD COLUMN process_token TEXT;
ALTER TABLE runs ADD COLUMN owner TEXT;
`,
  },
];

/** Throws unless versions run 1, 2, 3… (a gap or reorder would skip or repeat schema steps). */
export function assertMigrationOrder(list: readonly Migration[]): void {
  list.forEach((migration, index) => {
    if (migration.version !== index + 1) {
      throw new Error(`Migration at index ${index} has version ${migration.version}; expected ${index + 1}`);
    }
  });
}

/** The newest schema version this build knows. */
export const LATEST_SCHEMA_VERSION: number = latestVersion(migrations);

function latestVersion(list: readonly Migration[]): number {
  return list.at(-1)?.version ?? 0;
}

/** `PRAGMA user_version`: 0 for a new or foreign database. Reading it does not write the file. */
export function readUserVersion(db: DatabaseSync): number {
  const row = db.prepare("PRAGMA user_version").get();
  const version = row?.["user_version"];
  if (typeof version !== "number") throw new Error("PRAGMA user_version returned no number");
  return version;
}

export function tooNewError(found: number, latest: number): GatewayError {
  return new GatewayError("STORE_TOO_NEW", `The database has schema version ${found}; this ocgw knows up to ${latest}`, {
    details: { found, latest },
  });
}

/**
 * Brings the database to the newest version in `list`, all pending steps in one `BEGIN IMMEDIATE`
 * transaction: a failure leaves the database exactly at its old version. Returns the version reached.
 * Throws STORE_TOO_NEW when the database is ahead of `list`; any other error is SQLite's.
 */
export function applyMigrations(db: DatabaseSync, list: readonly Migration[] = migrations): number {
  assertMigrationOrder(list);
  const latest = latestVersion(list);
  const seen = readUserVersion(db);
  if (seen > latest) throw tooNewError(seen, latest);
  if (seen === latest) return seen;
  db.exec("BEGIN IMMEDIATE");
  try {
    // Another process may have migrated between the read above and taking the write lock.
    const current = readUserVersion(db);
    if (current > latest) throw tooNewError(current, latest);
    for (const migration of list) {
      if (migration.version <= current) continue;
      db.exec(migration.up);
      // user_version lives in the database header, so it commits or rolls back with the DDL.
      db.exec(`PRAGMA user_version = ${migration.version}`);
    }
    db.exec("COMMIT");
  } catch (error) {
    if (db.isTransaction) db.exec("ROLLBACK");
    throw error;
  }
  return latest;
}
