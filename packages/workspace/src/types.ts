import type { WorkspaceError } from "./errors.ts";

export type WorkspaceKind = "persistent" | "ephemeral" | "none";

/** Why a lease is being released; recorded, never interpreted by providers. */
export type ReleaseReason = "delete" | "reset" | "idle" | "run-end" | "shutdown" | "collector" | "error" | "manual";

export interface WorkspaceRequest {
  /** The session key. A string, never a path: providers derive a safe name from it. */
  key: string;
  /** The owning agent's id (normalised by the provider). Default: the provider's default agent. */
  agentId?: string | undefined;
  /**
   * Ephemeral only: copy the top-level regular files of this directory (an agent's workspace) into
   * the new workspace instead of the bootstrap templates. Symlinks in it are never followed.
   */
  seedFrom?: string | undefined;
  /**
   * Called with the path a new directory will have (null for none), before it is created, so that a caller can
   * record the lease first (a crash in between then leaves nothing the caller cannot see).
   * A rejection aborts the acquire with nothing created.
   */
  beforeCreate?: ((planned: PlannedLease) => Promise<void> | void) | undefined;
}

export interface PlannedLease {
  readonly leaseId: string;
  /** The directory the lease will have; null for the none provider. */
  readonly path: string | null;
  readonly key: string;
}

/** The device and inode of a workspace directory at creation, as decimal strings (64-bit safe). */
export interface DirIdentity {
  readonly dev: string;
  readonly ino: string;
}

export interface WorkspaceLease {
  /** Unique per acquire (uuid). */
  readonly leaseId: string;
  readonly kind: WorkspaceKind;
  readonly key: string;
  readonly agentId: string;
  /** Absolute directory, or `null` for the `none` provider. */
  readonly path: string | null;
  /** Milliseconds since the epoch. */
  readonly createdAt: number;
  /** Set when the provider created the directory and will check it before removal. */
  readonly identity?: DirIdentity | undefined;
  /** The instance that created it (ephemeral only). */
  readonly instanceId?: string | undefined;
  /** True when this acquire created the directory (false when it adopted an existing one). */
  readonly created: boolean;
}

export type ReleaseOutcome =
  /** The directory was removed. */
  | "removed"
  /** The directory was already gone; nothing to do. */
  | "gone"
  /** The provider keeps directories on release (persistent) or has none (none). */
  | "kept"
  /** Removal was refused (outside root, identity changed): nothing was deleted. */
  | "refused"
  /** Moved to a trash entry inside the root that could not be fully deleted; the collector retries. */
  | "trashed"
  /** Nothing could be moved or deleted (e.g. the root is not writable); the lease stays listed and a later release retries. */
  | "failed"
  /** The lease has no directory (`none` provider). */
  | "none";

export interface ReleaseResult {
  readonly leaseId: string;
  readonly outcome: ReleaseOutcome;
  readonly reason: ReleaseReason;
  /** The trash entry left behind, for outcome `trashed`. */
  readonly trashPath?: string | undefined;
  /** Why removal was refused or incomplete; release itself never throws for these. */
  readonly error?: WorkspaceError | undefined;
}

/** What `list()` reports of a held lease. */
export type WorkspaceRecord = Pick<WorkspaceLease, "leaseId" | "kind" | "key" | "agentId" | "path" | "createdAt">;

/**
 * The seam: every workspace directory the gateway uses is created, handed out and released
 * through one of these. Implementations are factories (`createXProvider`) passing the shared
 * contract suite (`test/contract.ts`).
 */
export interface WorkspaceProvider {
  readonly kind: WorkspaceKind;
  /** Declared capability: `release` deletes the directory. */
  readonly removesOnRelease: boolean;
  /** Declared capability: distinct keys get distinct directories. */
  readonly perKey: boolean;
  /** The directory all of this provider's workspaces live under, or null (none, persistent). */
  readonly root: string | null;
  /** Create (or, for persistent, adopt) the workspace for a request. */
  acquire(request: WorkspaceRequest): Promise<WorkspaceLease>;
  /** Idempotent: twice, concurrently, or after the directory vanished, all succeed. Never throws for removal trouble. */
  release(lease: WorkspaceLease, reason: ReleaseReason): Promise<ReleaseResult>;
  /** The leases this provider holds now. */
  list(): Promise<WorkspaceRecord[]>;
  /** Stops taking leases and frees the provider's own resources (locks, timers). Does not release leases. */
  close(): Promise<void>;
}

export function toRecord(lease: WorkspaceLease): WorkspaceRecord {
  return {
    leaseId: lease.leaseId,
    kind: lease.kind,
    key: lease.key,
    agentId: lease.agentId,
    path: lease.path,
    createdAt: lease.createdAt,
  };
}
