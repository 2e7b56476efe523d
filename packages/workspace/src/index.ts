export type {
  DirIdentity,
  PlannedLease,
  ReleaseOutcome,
  ReleaseReason,
  ReleaseResult,
  WorkspaceKind,
  WorkspaceLease,
  WorkspaceProvider,
  WorkspaceRecord,
  WorkspaceRequest,
} from "./types.ts";
export { WorkspaceError, errnoCode, isWorkspaceError, workspaceErrorCatalog, type WorkspaceErrorCode } from "./errors.ts";
export { type FsPort, nodeFsPort } from "./fs-port.ts";
export { AGENT_ID_PATTERN, DEFAULT_AGENT_ID, leaseDirName, normalizeAgentId, resolveAgentWorkspaceDir, slugKey, type AgentWorkspaceConfig } from "./paths.ts";
export { BOOTSTRAP_FILES, seedBootstrap, seedFromDirectory } from "./bootstrap.ts";
export { MARKER_NAME, readMarker, type LeaseMarker } from "./marker.ts";
export { currentUid, defaultEphemeralRoot, ensurePrivateRoot, verifyPrivateRoot } from "./root.ts";
export { safeRemove, type SafeRemoveResult } from "./remove.ts";
export { removeTree } from "./remove-tree.ts";
export {
  DEFAULT_STALE_MS,
  createLivenessProbe,
  currentProcess,
  memoizeLiveness,
  pidExists,
  processState,
  registerInstance,
  type InstanceHandle,
  type LivenessOptions,
  type LivenessProbe,
  type ProcessIdentity,
} from "./instance.ts";
export { parseProcStat, readProcStat, type ProcStat } from "./proc-stat.ts";
export { sweep, type LedgerClaim, type SweepEntry, type SweepOptions, type SweepProgress, type SweepResult } from "./sweep.ts";
export { createEphemeralProvider, DEFAULT_MAX_LEASES, type EphemeralProvider, type EphemeralProviderOptions } from "./providers/ephemeral.ts";
export { createPersistentProvider, type PersistentProviderOptions } from "./providers/persistent.ts";
export { createNoneProvider, type NoneProviderOptions } from "./providers/none.ts";
export { createWorkspaceProvider, type ProviderSpec } from "./resolve.ts";
