import type { ReleaseReason, WorkspaceLease, WorkspaceProvider } from "@ocgw/workspace";
import pLimit from "p-limit";
import { GatewayError } from "../errors.ts";
import type { Store, WorkspaceMode } from "../store/index.ts";

export interface WorkspaceProviders {
  ephemeral: WorkspaceProvider;
  /** Named agents' persistent workspaces (mode "agent"). */
  agent: WorkspaceProvider;
  /** The legacy per-session kept layout (mode "persistent"). */
  persistent: WorkspaceProvider;
  none: WorkspaceProvider;
}

export interface WorkspaceLifecycleOptions {
  store: Store;
  providers: WorkspaceProviders;
  /** The gateway instance that owns new leases (the ephemeral provider's instance id). */
  instanceId: string;
  /** `workspace.ephemeral.idleTtlMs`: release this long after a session's last run ended; 0 = at once. */
  idleTtlMs: number;
  /** Kills every process a session spawned; awaited before its workspace is removed. */
  killSessionProcesses(sessionKey: string): Promise<void>;
  /** Seed directory for an agent's ephemeral workspaces (its persistent workspace), if any. */
  seedFor?(agentId: string): string | undefined;
  log?(line: string): void;
}

/** Releases running at once during a graceful shutdown. */
export const RELEASE_CONCURRENCY = 32;

interface Slot {
  lease: WorkspaceLease | undefined;
  mode: WorkspaceMode;
  acquiring: Promise<WorkspaceLease> | undefined;
  releasing: Promise<void> | undefined;
  idleTimer: ReturnType<typeof setTimeout> | undefined;
}

export interface WorkspaceLifecycle {
  /** The session's workspace, acquiring it once (concurrent callers share one acquire). */
  acquire(sessionKey: string, agentId: string, mode: WorkspaceMode): Promise<WorkspaceLease>;
  /** The lease a session holds now, if any. */
  current(sessionKey: string): WorkspaceLease | undefined;
  /** Releases the session's workspace exactly once; later calls (and a session with none) resolve at once. */
  release(sessionKey: string, reason: ReleaseReason): Promise<void>;
  /** The session's last run ended: release after idleTtlMs (at once for 0). Resolves when an immediate release is done. */
  idle(sessionKey: string): Promise<void>;
  /** A run started: cancel a pending idle release. */
  busy(sessionKey: string): void;
  /** Releases every lease (graceful shutdown), within `timeoutMs`. Returns how many were still pending at the deadline. */
  releaseAll(reason: ReleaseReason, timeoutMs: number): Promise<number>;
  /** Live leases by session key. */
  live(): ReadonlyMap<string, WorkspaceLease>;
  /** Retries releases that failed outright (nothing could be moved or deleted); returns how many still fail. */
  retryFailed(): Promise<number>;
}

function providerFor(providers: WorkspaceProviders, mode: WorkspaceMode): WorkspaceProvider {
  return mode === "agent" ? providers.agent : providers[mode];
}

/**
 * Owns the one rule of this project: a session's workspace is released exactly once, whichever
 * way the session ends. Every lease is written to the ledger before its directory exists, and
 * every release goes: kill the session's processes → provider.release → ledger row released.
 */
export function createWorkspaceLifecycle(options: WorkspaceLifecycleOptions): WorkspaceLifecycle {
  const { store, providers } = options;
  const slots = new Map<string, Slot>();
  const leases = new Map<string, WorkspaceLease>();
  /** Releases that failed outright, kept so they are tried again (collector interval, shutdown). */
  const failed = new Map<string, { sessionKey: string; lease: WorkspaceLease; mode: WorkspaceMode; reason: ReleaseReason }>();
  /** Idle timers of sessions born in one burst fire together: their releases share this bound. */
  const idleLimit = pLimit(RELEASE_CONCURRENCY);

  function slotFor(sessionKey: string, mode: WorkspaceMode): Slot {
    let slot = slots.get(sessionKey);
    if (slot === undefined) {
      slot = { lease: undefined, mode, acquiring: undefined, releasing: undefined, idleTimer: undefined };
      slots.set(sessionKey, slot);
    }
    return slot;
  }

  async function doAcquire(sessionKey: string, agentId: string, mode: WorkspaceMode, slot: Slot): Promise<WorkspaceLease> {
    if (slot.releasing !== undefined) await slot.releasing;
    const provider = providerFor(providers, mode);
    let recordedId: string | undefined;
    try {
      const lease = await provider.acquire({
        key: sessionKey,
        agentId,
        seedFrom: mode === "ephemeral" ? options.seedFor?.(agentId) : undefined,
        beforeCreate: (planned) => {
          recordedId = planned.leaseId;
          store.recordLease({ leaseId: planned.leaseId, sessionKey, kind: provider.kind, mode, path: planned.path, instanceId: options.instanceId, createdAt: Date.now() });
        },
      });
      store.markLeaseLive(lease.leaseId, { path: lease.path, dev: lease.identity?.dev ?? null, ino: lease.identity?.ino ?? null });
      slot.lease = lease;
      slot.mode = mode;
      leases.set(sessionKey, lease);
      return lease;
    } catch (error) {
      if (recordedId !== undefined) store.markLeaseFailed(recordedId, error instanceof Error ? error.message : String(error), Date.now());
      throw new GatewayError("WORKSPACE_UNAVAILABLE", `No workspace for session "${sessionKey}": ${error instanceof Error ? error.message : String(error)}`, {
        cause: error,
        fix: null,
        retryable: true,
      });
    }
  }

  async function doRelease(sessionKey: string, lease: WorkspaceLease, mode: WorkspaceMode, reason: ReleaseReason): Promise<void> {
    store.markLeaseReleasing(lease.leaseId);
    // Nothing may keep writing into a tree that is being unlinked.
    await options.killSessionProcesses(sessionKey).catch((error: unknown) => options.log?.(`kill before release of ${sessionKey} failed: ${String(error)}`));
    const result = await providerFor(providers, mode).release(lease, reason);
    if (result.outcome === "failed") {
      if (!failed.has(lease.leaseId)) store.markLeaseFailed(lease.leaseId, result.error?.message ?? "release failed", Date.now());
      failed.set(lease.leaseId, { sessionKey, lease, mode, reason });
      options.log?.(`workspace release failed for ${sessionKey}: ${result.error?.message ?? ""}`);
      return;
    }
    failed.delete(lease.leaseId);
    store.markLeaseReleased(lease.leaseId, { releasedAt: Date.now(), reason, outcome: result.outcome, error: result.error?.message ?? null });
    if (result.error !== undefined) options.log?.(`workspace of ${sessionKey}: ${result.outcome}: ${result.error.message}`);
  }

  function release(sessionKey: string, reason: ReleaseReason): Promise<void> {
    const slot = slots.get(sessionKey);
    if (slot === undefined) return Promise.resolve();
    if (slot.idleTimer !== undefined) clearTimeout(slot.idleTimer);
    slot.idleTimer = undefined;
    const run = async (): Promise<void> => {
      // An acquire in flight finishes first, so its lease is released rather than orphaned.
      if (slot.acquiring !== undefined) await slot.acquiring.catch(() => undefined);
      const lease = slot.lease;
      if (lease === undefined) return;
      slot.lease = undefined;
      leases.delete(sessionKey);
      await doRelease(sessionKey, lease, slot.mode, reason);
    };
    const previous = slot.releasing ?? Promise.resolve();
    const releasing = previous.then(run).finally(() => {
      if (slot.releasing === releasing) {
        slot.releasing = undefined;
        if (slot.lease === undefined && slot.acquiring === undefined) slots.delete(sessionKey);
      }
    });
    slot.releasing = releasing;
    return releasing;
  }

  return {
    acquire(sessionKey, agentId, mode) {
      const slot = slotFor(sessionKey, mode);
      if (slot.idleTimer !== undefined) clearTimeout(slot.idleTimer);
      slot.idleTimer = undefined;
      if (slot.lease !== undefined && slot.releasing === undefined) return Promise.resolve(slot.lease);
      if (slot.acquiring !== undefined) return slot.acquiring;
      const acquiring = doAcquire(sessionKey, agentId, mode, slot).finally(() => {
        if (slot.acquiring === acquiring) slot.acquiring = undefined;
      });
      slot.acquiring = acquiring;
      return acquiring;
    },
    current(sessionKey) {
      return slots.get(sessionKey)?.lease;
    },
    release,
    idle(sessionKey) {
      const slot = slots.get(sessionKey);
      if (slot === undefined || slot.lease === undefined) return Promise.resolve();
      if (options.idleTtlMs === 0) return release(sessionKey, "run-end");
      if (slot.idleTimer !== undefined) clearTimeout(slot.idleTimer);
      slot.idleTimer = setTimeout(() => {
        slot.idleTimer = undefined;
        void idleLimit(() => release(sessionKey, "idle"));
      }, options.idleTtlMs);
      slot.idleTimer.unref();
      return Promise.resolve();
    },
    busy(sessionKey) {
      const slot = slots.get(sessionKey);
      if (slot?.idleTimer !== undefined) {
        clearTimeout(slot.idleTimer);
        slot.idleTimer = undefined;
      }
    },
    async releaseAll(reason, timeoutMs) {
      const pending = new Set<string>([...slots.keys()]);
      const retries = [...failed.values()].map((entry) => doRelease(entry.sessionKey, entry.lease, entry.mode, entry.reason).catch(() => undefined));
      // Bounded: 10,000 removals at once cost ~440 MB of RSS for no gain in time.
      const limit = pLimit(RELEASE_CONCURRENCY);
      const all = Promise.all(
        [...pending].map((key) =>
          limit(() =>
            release(key, reason)
              .catch((error: unknown) => options.log?.(`release of ${key} failed: ${String(error)}`))
              .finally(() => pending.delete(key)),
          ),
        ),
      );
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([Promise.all([all, ...retries]), new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
      clearTimeout(timer);
      return pending.size + failed.size;
    },
    live() {
      return leases;
    },
    async retryFailed() {
      for (const entry of [...failed.values()]) await doRelease(entry.sessionKey, entry.lease, entry.mode, entry.reason);
      return failed.size;
    },
  };
}
