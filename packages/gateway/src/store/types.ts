/**
 * Records and the synchronous API of the embedded SQLite store. Every timestamp is milliseconds
 * since the Unix epoch, supplied by the caller (the store never reads the clock, so tests and
 * replays stay deterministic).
 */

/** How a session's workspace is provided. */
export type WorkspaceMode = "ephemeral" | "agent" | "persistent" | "none";

/**
 * Where a workspace lease is in its life. A lease is recorded (`acquiring`) before its directory
 * exists, so a crash at any point leaves a row that names what may be on disk.
 *
 * Transitions: `acquiring → live | releasing | released | failed`, `live → releasing | released | failed`,
 * `releasing → released | failed`, `failed → released` (a later sweep cleaned it up). `released` is final.
 */
export type LeaseState = "acquiring" | "live" | "releasing" | "released" | "failed";

/** Every {@link LeaseState}, in life order. */
export const LEASE_STATES: readonly LeaseState[] = ["acquiring", "live", "releasing", "released", "failed"];

/** Who made a session exist. */
export type SessionOrigin = "operator" | "run" | "implicit";

export interface SessionRecord {
  /** The session key (e.g. `agent:main:work`); unique. */
  key: string;
  sessionId: string;
  agentId: string;
  label: string | null;
  createdVia: SessionOrigin;
  workspaceMode: WorkspaceMode;
  /** ms since epoch. */
  createdAt: number;
  /** ms since epoch; sessions are listed by it, newest first. */
  updatedAt: number;
  /** ms since epoch, or null before the first interaction. */
  lastInteractionAt: number | null;
}

export type MessageRole = "user" | "assistant" | "custom";

export interface MessageRecord {
  /** A random UUID given by the store. */
  id: string;
  sessionKey: string;
  /** 1-based position in the session's transcript: the session's highest seq + 1 at append time. */
  seq: number;
  role: MessageRole;
  /** Any JSON-serialisable value; stored as JSON text, so it reads back as `JSON.parse(JSON.stringify(content))` (`undefined` becomes `null`). */
  content: unknown;
  runId: string | null;
  idempotencyKey: string | null;
  /** ms since epoch. */
  createdAt: number;
}

export type RunStatus = "running" | "ok" | "error" | "aborted" | "timeout";

export type RunKind = "chat" | "agent";

export interface RunRecord {
  /** The run id (the request's idempotency key); unique. */
  runId: string;
  sessionKey: string;
  kind: RunKind;
  /** A hash of the run's input, to tell a retry of the same request from a conflicting reuse of its id. */
  inputHash: string;
  status: RunStatus;
  summary: string | null;
  replyText: string | null;
  errorMessage: string | null;
  /** ms since epoch. */
  startedAt: number;
  /** ms since epoch; null while `running`. */
  endedAt: number | null;
}

export type LeaseKind = "persistent" | "ephemeral" | "none";

export interface LeaseRecord {
  leaseId: string;
  /** The session the lease was taken for. Not a foreign key: the ledger outlives deleted sessions. */
  sessionKey: string;
  kind: LeaseKind;
  mode: WorkspaceMode;
  /** The workspace directory, or null for `none` (and for a lease whose path is not yet chosen). */
  path: string | null;
  state: LeaseState;
  /** The gateway instance that took the lease (for the liveness sweep). */
  instanceId: string | null;
  /** The directory's device number once live, as a decimal string (it may exceed 2^53). */
  dev: string | null;
  /** The directory's inode number once live, as a decimal string (it may exceed 2^53). */
  ino: string | null;
  /** ms since epoch. */
  createdAt: number;
  /** ms since epoch at which the lease ended: released, or failed. */
  releasedAt: number | null;
  releaseReason: string | null;
  outcome: string | null;
  error: string | null;
}

export interface StoreOptions {
  /**
   * The database file, or `":memory:"` for a private in-memory database. The parent directory must
   * already exist (the store does not create the state directory). A file database uses WAL.
   */
  path: string;
  /** Where a failed group commit is reported (see {@link Store.group}). Default: nowhere. */
  log?: (line: string) => void;
}

export interface ListSessionsQuery {
  /** Rows per page. Default 100; a negative value counts as 0. */
  limit?: number;
  /** Rows to skip. Default 0. */
  offset?: number;
  /** Only sessions of this agent. */
  agentId?: string;
  /** A case-insensitive substring of the key or the label. */
  search?: string;
}

export interface ListMessagesQuery {
  /** Messages to return. Default 200; clamped to 0…1000. */
  limit?: number;
  /**
   * Messages to skip from the oldest. When omitted the result is the tail: the newest `limit`
   * messages (still oldest first).
   */
  offset?: number;
}

export interface ListLeasesQuery {
  /** Only leases in one of these states; an empty array matches none. */
  states?: readonly LeaseState[];
  sessionKey?: string;
  instanceId?: string;
  /** Rows to return. Default: all. */
  limit?: number;
  /** Rows to skip. Default 0. */
  offset?: number;
}

export type SessionPatch = Partial<Pick<SessionRecord, "label" | "updatedAt" | "lastInteractionAt" | "workspaceMode" | "sessionId">>;

export type NewMessage = Omit<MessageRecord, "id" | "seq">;

export type NewRun = Pick<RunRecord, "runId" | "sessionKey" | "kind" | "inputHash" | "startedAt"> & {
  /** The token the run's processes carry (OCGW_RUN_TOKEN); see {@link Store.runProcessOwners}. */
  processToken?: string | null;
  /** The gateway process that runs it, as JSON (a ProcessIdentity of @ocgw/workspace). */
  owner?: string | null;
};

/** A run's process token and the gateway process that ran it (JSON), as recorded. */
export interface RunProcessOwner {
  readonly processToken: string;
  readonly owner: string;
}

export interface RunEnd {
  status: Exclude<RunStatus, "running">;
  summary?: string | null;
  replyText?: string | null;
  errorMessage?: string | null;
  /** ms since epoch. */
  endedAt: number;
}

export type NewLease = Pick<LeaseRecord, "leaseId" | "sessionKey" | "kind" | "mode" | "path" | "instanceId" | "createdAt">;

export interface LeaseLive {
  path: string | null;
  dev: string | null;
  ino: string | null;
}

export interface LeaseRelease {
  /** ms since epoch. */
  releasedAt: number;
  reason: string;
  outcome: string;
  error?: string | null;
}

/**
 * The gateway's durable state. Every method is synchronous and runs on the caller's thread.
 * Methods called after {@link Store.close} throw `GatewayError("STORE_UNAVAILABLE")`.
 */
export interface Store {
  /** The path the store was opened with. */
  readonly path: string;
  /** The schema version after migration (the newest this build knows). */
  readonly schemaVersion: number;
  /**
   * Commits made since the store opened: every write outside {@link Store.transaction} is one,
   * every transaction, group and batch of deferred writes one more (the migration at open is not
   * counted). For the bench and the
   * per-session commit budget test.
   */
  readonly commits: number;

  getSession(key: string): SessionRecord | undefined;
  /** Inserts unless the key exists; false when it does (the existing row is left as it was). */
  insertSession(record: SessionRecord): boolean;
  /** Sets the given fields (an `undefined` field is left alone; `label: null` clears); undefined when no such session. */
  patchSession(key: string, patch: SessionPatch): SessionRecord | undefined;
  /** Deletes the session and its messages; its leases and runs stay as history. False when no such session. */
  deleteSession(key: string): boolean;
  /** Most recently updated first (ties: key descending); `total` counts every match, ignoring limit and offset. */
  listSessions(query?: ListSessionsQuery): { rows: SessionRecord[]; total: number };

  /**
   * Appends to a session's transcript with the next seq, atomically (safe across connections).
   * Throws `GatewayError("SESSION_NOT_FOUND")` when the session does not exist.
   */
  appendMessage(message: NewMessage): MessageRecord;
  /** Oldest first. Without `offset`, the last `limit` messages; with it, a page from the start. */
  listMessages(sessionKey: string, query?: ListMessagesQuery): { messages: MessageRecord[]; total: number };
  /** Deletes the session's messages and returns how many; the next append starts again at seq 1. */
  clearMessages(sessionKey: string): number;

  /** Records a run as `running`; false when the runId exists (the existing run is left as it was). */
  insertRun(run: NewRun): boolean;
  getRun(runId: string): RunRecord | undefined;
  /**
   * Ends a running run. The first end wins: true when the run was `running` and is now ended, false
   * when it is unknown or already ended (an abort followed by the runner's late reply keeps `aborted`).
   */
  finishRun(runId: string, end: RunEnd): boolean;
  /** For start-up: every run still `running` (left by a crash) becomes `error`. Returns how many. */
  failRunningRuns(endedAt: number, errorMessage: string): number;
  /** Deletes ended runs whose `endedAt` is before the given time (ms since epoch). Returns how many. */
  pruneRuns(endedBefore: number): number;
  /** The process token and owner of every run on record that has both (runs are kept for a day). */
  runProcessOwners(): RunProcessOwner[];
  /**
   * Drops the process tokens of `owner`'s runs, once it has stopped them all (a graceful stop):
   * the next start then has nothing to look for in /proc. Returns how many rows changed.
   */
  forgetRunProcesses(owner: string): number;
  /**
   * Deletes `released` ledger rows that ended before `releasedBefore` and left nothing behind
   * (outcome `removed`, `gone` or `none`); rows that still describe a directory (`kept`,
   * `trashed`, `refused`) and every other state stay. Returns how many were deleted.
   */
  pruneReleasedLeases(releasedBefore: number): number;

  /** Records a new lease in state `acquiring`, before its directory exists. Throws if the leaseId exists. */
  recordLease(lease: NewLease): void;
  /** `acquiring → live`. True when the transition happened; false for an unknown lease or another state. */
  markLeaseLive(leaseId: string, live: LeaseLive): boolean;
  /** `acquiring | live → releasing`. True when the transition happened. */
  markLeaseReleasing(leaseId: string): boolean;
  /** `acquiring | live | releasing | failed → released`. True when the transition happened. */
  markLeaseReleased(leaseId: string, end: LeaseRelease): boolean;
  /** `acquiring | live | releasing → failed`, with `at` as `releasedAt`. True when the transition happened. */
  markLeaseFailed(leaseId: string, error: string, at: number): boolean;
  getLease(leaseId: string): LeaseRecord | undefined;
  /** Newest first (by `createdAt`, then insertion order). */
  listLeases(query?: ListLeasesQuery): LeaseRecord[];
  /** How many leases are in each state; every state is present, 0 when none. */
  countLeases(): Record<LeaseState, number>;

  /**
   * Runs `fn` inside `BEGIN IMMEDIATE … COMMIT`, rolling back and rethrowing if it throws. A call
   * inside another transaction just runs `fn` (the outer one commits or rolls back). `fn` must be
   * synchronous: when it returns a promise the transaction is rolled back and a TypeError thrown.
   */
  transaction<T>(fn: () => T): T;
  /**
   * Runs `fn` in the open admission group, opening one if there is none: its writes are undone if
   * it throws, and committed together with every other `fn` of this macrotask by one COMMIT at its
   * end (setImmediate), or earlier, as soon as the store is used outside a group. So a burst of
   * admissions costs one commit and none of them waits for another's. Inside a transaction or a
   * group, `fn` just runs. `fn` must be synchronous. (store/transactions.ts)
   */
  group<T>(fn: () => T): T;
  /**
   * Runs `fn`'s writes in the open transaction, opening one if there is none, and leaves them to be
   * committed with the next commit of anything else (a group, a transaction, a write outside a
   * transaction), or on their own `DEFER_MS` (store/transactions.ts, 1 s) later, or at {@link Store.close}. Reads on this
   * store see them at once and do not commit them. For ledger transitions a crash may lose without
   * harm (a lease `live`, `releasing`, `released`): the collector closes a dead instance's rows from
   * what is on disk. Inside a transaction or a group, `fn` just runs. `fn` must be synchronous.
   */
  deferred<T>(fn: () => T): T;
  /**
   * Queues `write` to run in the admission group right before its COMMIT (end of the macrotask), in
   * a SAVEPOINT of its own; `onAbandon` runs instead, with the error, if `write` throws or the
   * database is closed first (a failed COMMIT abandons the `onCommit` callbacks `write` registered).
   * Until then nothing else sees its writes: any other use of the store applies and commits them
   * first. So the acks of a burst of admissions go out before any of their INSERTs run. Inside a
   * plain transaction, `write` just runs.
   */
  later(write: () => void, onAbandon: (error: unknown) => void): void;
  /**
   * Runs `callback` once what was written so far is committed: at once outside a transaction or
   * group, after the outermost COMMIT inside one. If that COMMIT fails, `onAbandon` runs instead
   * (with the error) when given; if the body throws, neither does (its caller has the error). For news of a write (a
   * `sessions.changed` event, a run's start) that must not go out for a write that did not happen.
   */
  onCommit(callback: () => void, onAbandon?: (error: unknown) => void): void;
  /** Closes the database. Idempotent. */
  close(): void;
}
