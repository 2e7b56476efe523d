import { randomUUID } from "node:crypto";
import { DatabaseSync, type SQLInputValue, type SQLOutputValue, type StatementSync } from "node:sqlite";
import { GatewayError } from "../errors.ts";
import { LATEST_SCHEMA_VERSION, applyMigrations, readUserVersion, tooNewError } from "./schema.ts";
import { createTransactions } from "./transactions.ts";
import {
  LEASE_STATES,
  type LeaseKind,
  type LeaseRecord,
  type LeaseState,
  type MessageRecord,
  type MessageRole,
  type RunKind,
  type RunRecord,
  type RunStatus,
  type SessionOrigin,
  type SessionRecord,
  type Store,
  type StoreOptions,
  type WorkspaceMode,
} from "./types.ts";

/** How long a statement waits for another connection's write lock before failing with SQLITE_BUSY, in ms. */
export const BUSY_TIMEOUT_MS = 5000;
/** `listSessions` page size when none is given. */
export const DEFAULT_SESSION_LIMIT = 100;
/** `listMessages` tail length when none is given. */
export const DEFAULT_MESSAGE_LIMIT = 200;
/** The most messages one `listMessages` call returns. */
export const MAX_MESSAGE_LIMIT = 1000;

const MEMORY_PATH = ":memory:";
const SQLITE_CONSTRAINT_FOREIGNKEY = 787;

type Row = Record<string, SQLOutputValue>;

const SESSION_COLUMNS = "session_key, session_id, agent_id, label, created_via, workspace_mode, created_at, updated_at, last_interaction_at";
const MESSAGE_COLUMNS = "id, session_key, seq, role, content, run_id, idempotency_key, created_at";
const RUN_COLUMNS = "run_id, session_key, kind, input_hash, status, summary, reply_text, error_message, started_at, ended_at";
const LEASE_COLUMNS = "lease_id, session_key, kind, mode, path, state, instance_id, dev, ino, created_at, released_at, release_reason, outcome, error";

/**
 * Opens (creating if missing) and migrates the SQLite store. File databases use WAL with
 * `synchronous=NORMAL` (a power cut may lose the last commits, never corrupt); every connection
 * waits up to {@link BUSY_TIMEOUT_MS} for a lock and enforces foreign keys.
 *
 * Throws `GatewayError("STORE_TOO_NEW")` when the database's schema is newer than this build (the
 * file is left untouched) and `GatewayError("STORE_UNAVAILABLE")` when it cannot be opened or
 * migrated (the cause is attached; a failed migration leaves the old version in place).
 */
export function openStore(options: StoreOptions): Store {
  const file = options.path;
  if (typeof file !== "string" || file === "") {
    throw new GatewayError("STORE_UNAVAILABLE", "The store path is empty", { fix: 'Pass a database file path or ":memory:"' });
  }
  let db: DatabaseSync;
  try {
    db = new DatabaseSync(file);
  } catch (error) {
    throw unavailable(file, error);
  }
  try {
    db.exec(`PRAGMA busy_timeout = ${BUSY_TIMEOUT_MS}`);
    // Checked before anything that writes (journal_mode=WAL rewrites the header), so a database
    // from a newer ocgw is left byte-for-byte as it was.
    const found = readUserVersion(db);
    if (found > LATEST_SCHEMA_VERSION) throw tooNewError(found, LATEST_SCHEMA_VERSION);
    if (file !== MEMORY_PATH) db.exec("PRAGMA journal_mode = WAL");
    db.exec("PRAGMA synchronous = NORMAL");
    db.exec("PRAGMA foreign_keys = ON");
    const schemaVersion = applyMigrations(db);
    return createStore(db, file, schemaVersion, options.log);
  } catch (error) {
    db.close();
    if (error instanceof GatewayError) throw error;
    throw unavailable(file, error);
  }
}

function unavailable(file: string, cause: unknown): GatewayError {
  const reason = cause instanceof Error ? cause.message : String(cause);
  return new GatewayError("STORE_UNAVAILABLE", `Cannot open the store "${file}": ${reason}`, { cause, details: { path: file } });
}

function createStore(db: DatabaseSync, file: string, schemaVersion: number, log?: (line: string) => void): Store {
  // SQLite's lower() folds ASCII only; search should match "É" with "é" like the UI does.
  db.function("ocgw_fold", { deterministic: true }, (value) => (typeof value === "string" ? value.toLowerCase() : null));

  // Everything on the per-request path is prepared here, once.
  const stmt = {

    getSession: db.prepare(`SELECT ${SESSION_COLUMNS} FROM sessions WHERE session_key = ?`),
    // ON CONFLICT DO NOTHING rather than INSERT OR IGNORE: OR IGNORE would also swallow CHECK and NOT NULL failures.
    insertSession: db.prepare(
      `INSERT INTO sessions (${SESSION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (session_key) DO NOTHING`,
    ),
    // One statement for every patch shape: each field has a "given" flag, so no SQL is built per call.
    patchSession: db.prepare(`UPDATE sessions SET
        label = CASE WHEN :setLabel THEN :label ELSE label END,
        updated_at = CASE WHEN :setUpdatedAt THEN :updatedAt ELSE updated_at END,
        last_interaction_at = CASE WHEN :setLastInteractionAt THEN :lastInteractionAt ELSE last_interaction_at END,
        workspace_mode = CASE WHEN :setWorkspaceMode THEN :workspaceMode ELSE workspace_mode END,
        session_id = CASE WHEN :setSessionId THEN :sessionId ELSE session_id END
      WHERE session_key = :key RETURNING ${SESSION_COLUMNS}`),
    // Messages go with the session through ON DELETE CASCADE.
    deleteSession: db.prepare("DELETE FROM sessions WHERE session_key = ?"),

    // A single INSERT … SELECT takes the write lock before reading max(seq), so the seq is atomic
    // even across connections; the unique (session_key, seq) index backs that up. Plain `?` only
    // (the key is bound twice): Node 22's node:sqlite rejects numbered `?NNN` positional binding
    // ("column index out of range").
    appendMessage: db.prepare(`INSERT INTO messages (${MESSAGE_COLUMNS})
      SELECT ?, ?, coalesce(max(seq), 0) + 1, ?, ?, ?, ?, ? FROM messages WHERE session_key = ?
      RETURNING seq`),
    messageTail: db.prepare(
      `SELECT * FROM (SELECT ${MESSAGE_COLUMNS} FROM messages WHERE session_key = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq ASC`,
    ),
    messagePage: db.prepare(`SELECT ${MESSAGE_COLUMNS} FROM messages WHERE session_key = ? ORDER BY seq ASC LIMIT ? OFFSET ?`),
    countMessages: db.prepare("SELECT count(*) AS n FROM messages WHERE session_key = ?"),
    clearMessages: db.prepare("DELETE FROM messages WHERE session_key = ?"),

    insertRun: db.prepare(
      "INSERT INTO runs (run_id, session_key, kind, input_hash, status, started_at, process_token, owner) VALUES (?, ?, ?, ?, 'running', ?, ?, ?) ON CONFLICT (run_id) DO NOTHING",
    ),
    runProcessOwners: db.prepare("SELECT process_token, owner FROM runs WHERE process_token IS NOT NULL AND owner IS NOT NULL"),
    forgetRunProcesses: db.prepare("UPDATE runs SET process_token = NULL WHERE owner = ? AND process_token IS NOT NULL"),
    getRun: db.prepare(`SELECT ${RUN_COLUMNS} FROM runs WHERE run_id = ?`),
    finishRun: db.prepare(
      "UPDATE runs SET status = ?, summary = ?, reply_text = ?, error_message = ?, ended_at = ? WHERE run_id = ? AND status = 'running'",
    ),
    failRunningRuns: db.prepare("UPDATE runs SET status = 'error', error_message = ?, ended_at = ? WHERE status = 'running'"),
    // The table CHECK ties ended_at IS NOT NULL to a terminal status, so running runs never match.
    pruneRuns: db.prepare("DELETE FROM runs WHERE ended_at < ?"),
    pruneReleasedLeases: db.prepare("DELETE FROM leases WHERE state = 'released' AND released_at < ? AND outcome IN ('removed', 'gone', 'none')"),

    recordLease: db.prepare(
      "INSERT INTO leases (lease_id, session_key, kind, mode, path, state, instance_id, created_at) VALUES (?, ?, ?, ?, ?, 'acquiring', ?, ?)",
    ),
    // Each transition names the states it may start from, so a late or repeated call cannot move a lease backwards.
    markLeaseLive: db.prepare("UPDATE leases SET state = 'live', path = ?, dev = ?, ino = ? WHERE lease_id = ? AND state = 'acquiring'"),
    markLeaseReleasing: db.prepare("UPDATE leases SET state = 'releasing' WHERE lease_id = ? AND state IN ('acquiring', 'live')"),
    markLeaseReleased: db.prepare(
      "UPDATE leases SET state = 'released', released_at = ?, release_reason = ?, outcome = ?, error = ? WHERE lease_id = ? AND state <> 'released'",
    ),
    markLeaseFailed: db.prepare(
      "UPDATE leases SET state = 'failed', error = ?, released_at = ? WHERE lease_id = ? AND state IN ('acquiring', 'live', 'releasing')",
    ),
    getLease: db.prepare(`SELECT ${LEASE_COLUMNS} FROM leases WHERE lease_id = ?`),
    countLeases: db.prepare("SELECT state, count(*) AS n FROM leases GROUP BY state"),
  } satisfies Record<string, StatementSync>;

  // Filtered listings get one statement per filter shape (at most 4 and 8), prepared on first use,
  // so each shape keeps a plan that can use its index instead of a catch-all "? IS NULL OR …".
  const sessionLists = new Map<string, { rows: StatementSync; total: StatementSync }>();
  const leaseLists = new Map<string, StatementSync>();

  let closed = false;
  const tx = createTransactions(db, log);

  function assertOpen(): void {
    if (closed) {
      throw new GatewayError("STORE_UNAVAILABLE", `The store "${file}" is closed`, { fix: "Open the store again; it is closed at gateway shutdown" });
    }
  }

  /** Before a read: open, and an open admission group committed first (see transactions.ts). */
  function ensureOpen(): void {
    assertOpen();
    tx.beforeRead();
  }

  /** A write: joins the enclosing transaction, or commits at once with whatever is open (see transactions.ts). */
  function write<T>(fn: () => T): T {
    assertOpen();
    return tx.write(fn);
  }

  function sessionList(byAgent: boolean, bySearch: boolean): { rows: StatementSync; total: StatementSync } {
    const shape = `${byAgent ? "a" : ""}${bySearch ? "s" : ""}`;
    let cached = sessionLists.get(shape);
    if (cached === undefined) {
      const where: string[] = [];
      if (byAgent) where.push("agent_id = :agentId");
      if (bySearch) where.push("(instr(ocgw_fold(session_key), :search) > 0 OR instr(ocgw_fold(coalesce(label, '')), :search) > 0)");
      const clause = where.length > 0 ? `WHERE ${where.join(" AND ")}` : "";
      cached = {
        rows: db.prepare(`SELECT ${SESSION_COLUMNS} FROM sessions ${clause} ORDER BY updated_at DESC, session_key DESC LIMIT :limit OFFSET :offset`),
        total: db.prepare(`SELECT count(*) AS n FROM sessions ${clause}`),
      };
      sessionLists.set(shape, cached);
    }
    return cached;
  }

  function leaseList(byStates: boolean, bySession: boolean, byInstance: boolean): StatementSync {
    const shape = `${byStates ? "t" : ""}${bySession ? "s" : ""}${byInstance ? "i" : ""}`;
    let cached = leaseLists.get(shape);
    if (cached === undefined) {
      const where: string[] = [];
      if (byStates) where.push("state IN (SELECT value FROM json_each(:states))");
      if (bySession) where.push("session_key = :sessionKey");
      if (byInstance) where.push("instance_id = :instanceId");
      const clause = where.length > 0 ? `WHERE ${where.join(" AND ")}` : "";
      // rowid breaks created_at ties in insertion order, which the indexes carry implicitly.
      cached = db.prepare(`SELECT ${LEASE_COLUMNS} FROM leases ${clause} ORDER BY created_at DESC, rowid DESC LIMIT :limit OFFSET :offset`);
      leaseLists.set(shape, cached);
    }
    return cached;
  }

  const store: Store = {
    path: file,
    schemaVersion,
    get commits() {
      return tx.commits;
    },

    getSession(key) {
      ensureOpen();
      const row = stmt.getSession.get(key);
      return row === undefined ? undefined : toSession(row);
    },

    insertSession(record) {
      return write(() => {
        const result = stmt.insertSession.run(
          record.key,
          record.sessionId,
          record.agentId,
          record.label,
          record.createdVia,
          record.workspaceMode,
          record.createdAt,
          record.updatedAt,
          record.lastInteractionAt,
        );
        return Number(result.changes) === 1;
      });
    },

    patchSession(key, patch) {
      return write(() => {
        const row = stmt.patchSession.get({
          key,
          setLabel: flag(patch.label),
          label: patch.label ?? null,
          setUpdatedAt: flag(patch.updatedAt),
          updatedAt: patch.updatedAt ?? null,
          setLastInteractionAt: flag(patch.lastInteractionAt),
          lastInteractionAt: patch.lastInteractionAt ?? null,
          setWorkspaceMode: flag(patch.workspaceMode),
          workspaceMode: patch.workspaceMode ?? null,
          setSessionId: flag(patch.sessionId),
          sessionId: patch.sessionId ?? null,
        });
        return row === undefined ? undefined : toSession(row);
      });
    },

    deleteSession(key) {
      return write(() => Number(stmt.deleteSession.run(key).changes) > 0);
    },

    listSessions(query = {}) {
      ensureOpen();
      const byAgent = query.agentId !== undefined;
      const bySearch = query.search !== undefined;
      const { rows, total } = sessionList(byAgent, bySearch);
      const filter: Record<string, SQLInputValue> = {};
      if (byAgent) filter["agentId"] = query.agentId ?? null;
      if (bySearch) filter["search"] = (query.search ?? "").toLowerCase();
      const page = rows.all({ ...filter, limit: clampCount(query.limit, DEFAULT_SESSION_LIMIT), offset: clampCount(query.offset, 0) });
      return { rows: page.map(toSession), total: countOf(total.get(filter)) };
    },

    appendMessage(message) {
      return write(() => {
        const id = randomUUID();
        // JSON.stringify(undefined) is undefined, not text; store it as JSON null.
        const content = JSON.stringify(message.content) ?? "null";
        let row: Row | undefined;
        try {
          row = stmt.appendMessage.get(id, message.sessionKey, message.role, content, message.runId, message.idempotencyKey, message.createdAt, message.sessionKey);
        } catch (error) {
          if (sqliteErrcode(error) === SQLITE_CONSTRAINT_FOREIGNKEY) {
            throw new GatewayError("SESSION_NOT_FOUND", `Cannot append a message: no session "${message.sessionKey}"`, {
              cause: error,
              details: { key: message.sessionKey },
            });
          }
          throw error;
        }
        return {
          id,
          sessionKey: message.sessionKey,
          seq: integer(row, "seq"),
          role: message.role,
          content: JSON.parse(content) as unknown,
          runId: message.runId,
          idempotencyKey: message.idempotencyKey,
          createdAt: message.createdAt,
        };
      });
    },

    listMessages(sessionKey, query = {}) {
      ensureOpen();
      const limit = clampCount(query.limit, DEFAULT_MESSAGE_LIMIT, MAX_MESSAGE_LIMIT);
      const rows =
        query.offset === undefined
          ? stmt.messageTail.all(sessionKey, limit)
          : stmt.messagePage.all(sessionKey, limit, clampCount(query.offset, 0));
      return { messages: rows.map(toMessage), total: countOf(stmt.countMessages.get(sessionKey)) };
    },

    clearMessages(sessionKey) {
      return write(() => Number(stmt.clearMessages.run(sessionKey).changes));
    },

    insertRun(run) {
      return write(() => Number(stmt.insertRun.run(run.runId, run.sessionKey, run.kind, run.inputHash, run.startedAt, run.processToken ?? null, run.owner ?? null).changes) === 1);
    },

    getRun(runId) {
      ensureOpen();
      const row = stmt.getRun.get(runId);
      return row === undefined ? undefined : toRun(row);
    },

    finishRun(runId, end) {
      return write(() => {
        const result = stmt.finishRun.run(end.status, end.summary ?? null, end.replyText ?? null, end.errorMessage ?? null, end.endedAt, runId);
        return Number(result.changes) === 1;
      });
    },

    failRunningRuns(endedAt, errorMessage) {
      return write(() => Number(stmt.failRunningRuns.run(errorMessage, endedAt).changes));
    },

    forgetRunProcesses(owner) {
      return write(() => Number(stmt.forgetRunProcesses.run(owner).changes));
    },

    runProcessOwners() {
      ensureOpen();
      return stmt.runProcessOwners.all().map((row) => ({ processToken: String(row["process_token"]), owner: String(row["owner"]) }));
    },

    pruneRuns(endedBefore) {
      return write(() => Number(stmt.pruneRuns.run(endedBefore).changes));
    },

    pruneReleasedLeases(releasedBefore) {
      return write(() => Number(stmt.pruneReleasedLeases.run(releasedBefore).changes));
    },

    recordLease(lease) {
      return write(() => {
        stmt.recordLease.run(lease.leaseId, lease.sessionKey, lease.kind, lease.mode, lease.path, lease.instanceId, lease.createdAt);
      });
    },

    markLeaseLive(leaseId, live) {
      return write(() => Number(stmt.markLeaseLive.run(live.path, live.dev, live.ino, leaseId).changes) === 1);
    },

    markLeaseReleasing(leaseId) {
      return write(() => Number(stmt.markLeaseReleasing.run(leaseId).changes) === 1);
    },

    markLeaseReleased(leaseId, end) {
      return write(() => Number(stmt.markLeaseReleased.run(end.releasedAt, end.reason, end.outcome, end.error ?? null, leaseId).changes) === 1);
    },

    markLeaseFailed(leaseId, error, at) {
      return write(() => Number(stmt.markLeaseFailed.run(error, at, leaseId).changes) === 1);
    },

    getLease(leaseId) {
      ensureOpen();
      const row = stmt.getLease.get(leaseId);
      return row === undefined ? undefined : toLease(row);
    },

    listLeases(query = {}) {
      ensureOpen();
      const byStates = query.states !== undefined;
      const bySession = query.sessionKey !== undefined;
      const byInstance = query.instanceId !== undefined;
      const params: Record<string, SQLInputValue> = {
        // SQLite reads a negative LIMIT as "no limit".
        limit: query.limit === undefined ? -1 : clampCount(query.limit, 0),
        offset: clampCount(query.offset, 0),
      };
      if (byStates) params["states"] = JSON.stringify(query.states);
      if (bySession) params["sessionKey"] = query.sessionKey ?? null;
      if (byInstance) params["instanceId"] = query.instanceId ?? null;
      return leaseList(byStates, bySession, byInstance).all(params).map(toLease);
    },

    countLeases() {
      ensureOpen();
      const counts = Object.fromEntries(LEASE_STATES.map((state) => [state, 0])) as Record<LeaseState, number>;
      for (const row of stmt.countLeases.all()) counts[text(row, "state") as LeaseState] = integer(row, "n");
      return counts;
    },

    transaction(fn) {
      assertOpen();
      return tx.transaction(fn);
    },

    group(fn) {
      assertOpen();
      return tx.group(fn);
    },

    deferred(fn) {
      assertOpen();
      return tx.deferred(fn);
    },

    later(write, onAbandon) {
      assertOpen();
      tx.later(write, onAbandon);
    },

    onCommit(callback, onAbandon) {
      tx.onCommit(callback, onAbandon);
    },

    close() {
      if (closed) return;
      tx.flush();
      closed = true;
      db.close();
    },
  };
  return store;
}

function flag(value: unknown): number {
  return value === undefined ? 0 : 1;
}

/** A non-negative integer for LIMIT/OFFSET: `fallback` when not given, negatives become 0. */
function clampCount(value: number | undefined, fallback: number, max: number = Number.MAX_SAFE_INTEGER): number {
  if (value === undefined || Number.isNaN(value)) return fallback;
  return Math.min(max, Math.max(0, Math.trunc(value)));
}

function sqliteErrcode(error: unknown): number | undefined {
  const errcode = typeof error === "object" && error !== null ? (error as { errcode?: unknown }).errcode : undefined;
  return typeof errcode === "number" ? errcode : undefined;
}

function countOf(row: Row | undefined): number {
  return integer(row, "n");
}

// Column readers: the schema's NOT NULL and CHECK constraints guarantee these types, so a
// mismatch means a foreign or damaged database and is reported rather than passed on.
function text(row: Row | undefined, column: string): string {
  const value = row?.[column];
  if (typeof value !== "string") throw badColumn(column, value);
  return value;
}

function textOrNull(row: Row, column: string): string | null {
  const value = row[column];
  if (value === null || typeof value === "string") return value ?? null;
  throw badColumn(column, value);
}

function integer(row: Row | undefined, column: string): number {
  const value = row?.[column];
  if (typeof value !== "number") throw badColumn(column, value);
  return value;
}

function integerOrNull(row: Row, column: string): number | null {
  const value = row[column];
  if (value === null || typeof value === "number") return value ?? null;
  throw badColumn(column, value);
}

function badColumn(column: string, value: unknown): GatewayError {
  return new GatewayError("STORE_UNAVAILABLE", `The store returned ${value === undefined ? "no value" : typeof value} for column "${column}"`, {
    fix: "The database was changed outside ocgw; restore it or point OCGW_STATE_DIR at a fresh state directory",
  });
}

function toSession(row: Row): SessionRecord {
  return {
    key: text(row, "session_key"),
    sessionId: text(row, "session_id"),
    agentId: text(row, "agent_id"),
    label: textOrNull(row, "label"),
    createdVia: text(row, "created_via") as SessionOrigin,
    workspaceMode: text(row, "workspace_mode") as WorkspaceMode,
    createdAt: integer(row, "created_at"),
    updatedAt: integer(row, "updated_at"),
    lastInteractionAt: integerOrNull(row, "last_interaction_at"),
  };
}

function toMessage(row: Row): MessageRecord {
  return {
    id: text(row, "id"),
    sessionKey: text(row, "session_key"),
    seq: integer(row, "seq"),
    role: text(row, "role") as MessageRole,
    content: JSON.parse(text(row, "content")) as unknown,
    runId: textOrNull(row, "run_id"),
    idempotencyKey: textOrNull(row, "idempotency_key"),
    createdAt: integer(row, "created_at"),
  };
}

function toRun(row: Row): RunRecord {
  return {
    runId: text(row, "run_id"),
    sessionKey: text(row, "session_key"),
    kind: text(row, "kind") as RunKind,
    inputHash: text(row, "input_hash"),
    status: text(row, "status") as RunStatus,
    summary: textOrNull(row, "summary"),
    replyText: textOrNull(row, "reply_text"),
    errorMessage: textOrNull(row, "error_message"),
    startedAt: integer(row, "started_at"),
    endedAt: integerOrNull(row, "ended_at"),
  };
}

function toLease(row: Row): LeaseRecord {
  return {
    leaseId: text(row, "lease_id"),
    sessionKey: text(row, "session_key"),
    kind: text(row, "kind") as LeaseKind,
    mode: text(row, "mode") as WorkspaceMode,
    path: textOrNull(row, "path"),
    state: text(row, "state") as LeaseState,
    instanceId: textOrNull(row, "instance_id"),
    dev: textOrNull(row, "dev"),
    ino: textOrNull(row, "ino"),
    createdAt: integer(row, "created_at"),
    releasedAt: integerOrNull(row, "released_at"),
    releaseReason: textOrNull(row, "release_reason"),
    outcome: textOrNull(row, "outcome"),
    error: textOrNull(row, "error"),
  };
}
