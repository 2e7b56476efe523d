export type {
  LeaseKind,
  LeaseLive,
  LeaseRecord,
  LeaseRelease,
  LeaseState,
  ListLeasesQuery,
  ListMessagesQuery,
  ListSessionsQuery,
  MessageRecord,
  MessageRole,
  NewLease,
  NewMessage,
  NewRun,
  RunProcessOwner,
  RunEnd,
  RunKind,
  RunRecord,
  RunStatus,
  SessionOrigin,
  SessionPatch,
  SessionRecord,
  Store,
  StoreOptions,
  WorkspaceMode,
} from "./types.ts";
export { LEASE_STATES } from "./types.ts";
export { LATEST_SCHEMA_VERSION } from "./schema.ts";
export { BUSY_TIMEOUT_MS, DEFAULT_MESSAGE_LIMIT, DEFAULT_SESSION_LIMIT, MAX_MESSAGE_LIMIT, openStore } from "./sqlite-store.ts";
