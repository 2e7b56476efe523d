import type { ReleaseReason } from "@ocgw/workspace";
import type { CollectorReport } from "./collector.ts";
import type { ResolvedConfig } from "./config/index.ts";
import type { RunManager } from "./runs/run-manager.ts";
import type { CanonicalKey, KeyContext } from "./sessions/keys.ts";
import type { WorkspaceLifecycle } from "./sessions/workspaces.ts";
import type { SessionOrigin, SessionRecord, Store, WorkspaceMode } from "./store/index.ts";

/** What method handlers see of the running gateway. */
export interface GatewayContext {
  readonly config: ResolvedConfig;
  readonly store: Store;
  readonly runs: RunManager;
  readonly lifecycle: WorkspaceLifecycle;
  readonly keyContext: KeyContext;
  readonly instanceId: string;
  readonly ephemeralRoot: string;
  /** The session row for the key, created if missing (no workspace yet: that comes with the first run). */
  ensureSession(target: CanonicalKey, via: SessionOrigin, mode?: WorkspaceMode): SessionRecord;
  /**
   * As ensureSession, inside an admission (`store.group`): a new row is written right before the
   * group's COMMIT, after the acks of the read (store.later), with this turn's time as its last
   * interaction (`created`: the turn's run need not update it). Call it before `runs.submit`.
   */
  admitSession(target: CanonicalKey, via: SessionOrigin, mode?: WorkspaceMode): { session: SessionRecord; created: boolean };
  /** Aborts the session's runs, kills its processes and releases its workspace (exactly once). */
  endSession(sessionKey: string, reason: ReleaseReason): Promise<void>;
  sessionRow(record: SessionRecord): Record<string, unknown>;
  sessionsChanged(payload: Record<string, unknown>): void;
  sessionDefaults(): Record<string, unknown>;
  resolvedModel(): Record<string, unknown>;
  agentWorkspace(agentId: string): string;
  health(): Record<string, unknown>;
  status(): Record<string, unknown>;
  collect(dryRun: boolean): Promise<CollectorReport>;
}
