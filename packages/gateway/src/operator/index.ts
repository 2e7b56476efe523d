/**
 * What `ocgw` does for operators, as library calls: workspace inventory, the collector offline or
 * through a gateway, the scan and removal of workspaces older OpenClaw gateways left behind, and
 * health checks.
 */
export { STORE_FILE, directorySize, loadOfflineTarget, type OfflineOptions, type OfflineTarget } from "./common.ts";
export {
  WORKSPACE_STATES,
  listWorkspaces,
  listWorkspacesViaGateway,
  type InventoryOptions,
  type WorkspaceInventory,
  type WorkspaceRow,
  type WorkspaceState,
} from "./inventory.ts";
export { collectWorkspaces, collectWorkspacesViaGateway, type CollectOptions } from "./gc.ts";
export * from "../legacy/index.ts";
export { LOW_FREE_SPACE_BYTES, runDoctor, type CheckStatus, type DoctorCheck, type DoctorReport } from "./doctor.ts";
export { MAX_LISTED_SESSIONS, listAllSessions, type SessionSummary } from "./sessions.ts";
