/**
 * The legacy reclaim: the workspaces OpenClaw itself leaked (`<stateDir>/workspace-<id>` of
 * implicit sessions, per-session sandbox workspaces), removed only when OpenClaw's own state
 * proves them orphaned and they hold nothing but what OpenClaw seeded.
 */
export { type LegacyEntry, type LegacyKeepCode, type LegacyLocation, type LegacyRemoveCode } from "./decide.ts";
export { type OpenClawAgent, type SandboxSettings } from "./roster.ts";
export { probeOpenClawGateway, type GatewayProbe } from "./running.ts";
export { sandboxNamesOfSession } from "./context.ts";
export { SANDBOX_DIR_NAME, agentSandboxNames, sandboxDirName, sessionSandboxNames, type SandboxSession } from "./sandbox-names.ts";
export { KNOWN_SEEDS } from "./seeded.ts";
export { DEFAULT_MIN_AGE_MS, LEGACY_TRASH_TAG, scanLegacyState, type LegacyScan, type LegacyScanOptions, type LegacyTally } from "./scan.ts";
export { removeLegacyOrphans, type LegacyRemoval, type LegacySkip, type RemovalOptions } from "./reclaim.ts";
