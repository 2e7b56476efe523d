import type { ReleaseReason, WorkspaceLease, WorkspaceProvider } from "@ocgw/workspace";
import pLimit from "p-limit";
import { GatewayError } from "../errors.ts";
import type { Store, WorkspaceMode } from "../store/index.ts";
import { createIdleTimers } from "./idle-timers.ts";
import { type SerialQueue, createSerialQueue } from "./serial-queue.ts";

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
  /**
   * Kills every process a session spawned; awaited before a lease's first release (when the
   * session's processes are those of the runs that used the lease). Never called by a retry.
   */
  killSessionProcesses(sessionKey: string): Promise<void>;
  /** Seed directory for an agent's ephemeral workspaces (its persistent workspace), if any. */
  seedFor?(agentId: string): string | undefined;
  /** `workspace.persistent.maxSessions`: sessions that may own a kept per-session directory (mode "persistent"). Default: no bound. */
  maxPersistentSessions?: number | undefined;
  log?(line: string): void;
}

/** Releases running at once during a graceful shutdown. */
export const RELEASE_CONCURRENCY = 32;

interface Slot {
  lease: WorkspaceLease | undefined;
  mode: WorkspaceMode;
  /**
   * The session's acquires and releases, one at a time, in the order they were asked for. Made
   * when a task is queued and dropped when the last one has settled: an idle session holds none.
   */
  queue: SerialQueue | undefined;
  /** Bumped by every acquire and busy(): an idle release that fired earlier is then void. */
  activity: number;
}

interface LeaseRelease {
  sessionKey: string;
  lease: WorkspaceLease;
  mode: WorkspaceMode;
  reason: ReleaseReason;
}

export interface WorkspaceLifecycle {
  /**
   * The session's workspace, acquiring it once (concurrent callers share one lease). Queued after
   * every release of the session asked for before it. `signal` (the run's) ends the wait: aborted
   * before the acquire has started, it rejects at once with the signal's reason and acquires nothing.
   */
  acquire(sessionKey: string, agentId: string, mode: WorkspaceMode, signal?: AbortSignal): Promise<WorkspaceLease>;
  /** The lease a session holds now, if any. */
  current(sessionKey: string): WorkspaceLease | undefined;
  /**
   * Releases the session's workspace exactly once; later calls (and a session with none) release
   * nothing. Queued after the session's earlier acquires (whose lease it then releases), never
   * behind a later one.
   */
  release(sessionKey: string, reason: ReleaseReason): Promise<void>;
  /** The session's last run ended: release after idleTtlMs (at once for 0). Resolves when an immediate release is done. */
  idle(sessionKey: string): Promise<void>;
  /** A run started: cancel a pending idle release. */
  busy(sessionKey: string): void;
  /** Releases every lease (graceful shutdown), within `timeoutMs`. Returns how many were still pending at the deadline. */
  releaseAll(reason: ReleaseReason, timeoutMs: number): Promise<number>;
  /** Live leases by session key. */
  live(): ReadonlyMap<string, WorkspaceLease>;
  /**
   * Retries releases that failed outright (nothing could be moved or deleted), by lease: it kills
   * no process, so the session's current run is never touched. Returns how many still fail.
   */
  retryFailed(): Promise<number>;
}

function providerFor(providers: WorkspaceProviders, mode: WorkspaceMode): WorkspaceProvider {
  return mode === "agent" ? providers.agent : providers[mode];
}

/**
 * Owns the one rule of this project: a session's workspace is released exactly once, whichever
 * way the session ends. Every lease is written to the ledger (and committed) before its directory
 * exists, and every release goes: kill the session's processes → provider.release → ledger row
 * released. The later transitions (live, releasing, released) are deferred writes: they ride on
 * the next commit, so a one-shot session costs three commits, and one a crash loses leaves a row
 * open that the collector closes once this instance is dead.
 *
 * Ordering: a session's acquires and releases go through one FIFO queue, so a release waits only
 * for what was asked before it (an acquire in flight finishes, and its lease is what is released)
 * and an acquire asked after a release gets a new lease. Nothing in the queue waits on a run.
 */
export function createWorkspaceLifecycle(options: WorkspaceLifecycleOptions): WorkspaceLifecycle {
  const { store, providers } = options;
  const slots = new Map<string, Slot>();
  const leases = new Map<string, WorkspaceLease>();
  /** Releases that failed outright, by lease id, kept so they are tried again (collector interval, shutdown). */
  const failed = new Map<string, LeaseRelease>();
  /** Retries in flight by lease id: the collector and a shutdown never retry one lease twice at once. */
  const retrying = new Map<string, Promise<void>>();
  /** Idle timers of sessions born in one burst fire together: their releases share this bound. */
  const idleLimit = pLimit(RELEASE_CONCURRENCY);

  /** Every session's idle release on one timer (idleTtlMs is one value for all). */
  const idleTimers = createIdleTimers(options.idleTtlMs, (sessionKey) => {
    const slot = slots.get(sessionKey);
    if (slot === undefined) return;
    const activity = slot.activity;
    // A run that started after the timer fired, while this release waited for its turn, keeps the lease.
    void idleLimit(() => (slot.activity === activity ? release(sessionKey, "idle") : undefined));
  });

  function slotFor(sessionKey: string, mode: WorkspaceMode): Slot {
    let slot = slots.get(sessionKey);
    if (slot === undefined) {
      slot = { lease: undefined, mode, queue: undefined, activity: 0 };
      slots.set(sessionKey, slot);
    }
    return slot;
  }

  /** The session's queue, made on first use and dropped (with the slot, if nothing else holds it) once drained. */
  function queueOf(sessionKey: string, slot: Slot): SerialQueue {
    if (slot.queue === undefined) {
      const queue = createSerialQueue(() => {
        if (slot.queue === queue) slot.queue = undefined;
        forgetIfUnused(sessionKey, slot);
      });
      slot.queue = queue;
    }
    return slot.queue;
  }

  function forgetIfUnused(sessionKey: string, slot: Slot): void {
    if (slot.lease === undefined && !idleTimers.has(sessionKey) && slot.queue === undefined && slots.get(sessionKey) === slot) slots.delete(sessionKey);
  }

  /** Kept per-session directories are never removed: a session that has none yet may make one only below the bound. */
  function checkPersistentBound(sessionKey: string): void {
    const max = options.maxPersistentSessions;
    if (max === undefined) return;
    const owners = new Set(store.listLeases().filter((row) => row.mode === "persistent").map((row) => row.sessionKey));
    if (owners.has(sessionKey) || owners.size < max) return;
    throw new GatewayError("WORKSPACE_LIMIT", `Session "${sessionKey}" cannot get a kept per-session directory: ${owners.size} sessions already have one (workspace.persistent.maxSessions)`);
  }

  async function doAcquire(sessionKey: string, agentId: string, mode: WorkspaceMode, slot: Slot): Promise<WorkspaceLease> {
    if (mode === "persistent") checkPersistentBound(sessionKey);
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
      // Deferred (rides on the run's next commit): if a crash loses it, the `acquiring` row's path is the proof.
      store.deferred(() => store.markLeaseLive(lease.leaseId, { path: lease.path, dev: lease.identity?.dev ?? null, ino: lease.identity?.ino ?? null }));
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

  /** provider.release and the ledger row; a release that fails outright is kept for a retry. */
  async function releaseLease(entry: LeaseRelease): Promise<void> {
    const { sessionKey, lease, mode, reason } = entry;
    const result = await providerFor(providers, mode).release(lease, reason);
    if (result.outcome === "failed") {
      if (!failed.has(lease.leaseId)) store.markLeaseFailed(lease.leaseId, result.error?.message ?? "release failed", Date.now());
      failed.set(lease.leaseId, entry);
      options.log?.(`workspace release failed for ${sessionKey}: ${result.error?.message ?? ""}`);
      return;
    }
    failed.delete(lease.leaseId);
    // Deferred: a row a crash leaves open is closed by the collector (the directory is gone: outcome `gone`).
    store.deferred(() => store.markLeaseReleased(lease.leaseId, { releasedAt: Date.now(), reason, outcome: result.outcome, error: result.error?.message ?? null }));
    if (result.error !== undefined) options.log?.(`workspace of ${sessionKey}: ${result.outcome}: ${result.error.message}`);
  }

  /** The first release of a lease. Runs in the session's queue: the session's processes are then those of the runs that used this lease. */
  async function firstRelease(entry: LeaseRelease): Promise<void> {
    store.deferred(() => store.markLeaseReleasing(entry.lease.leaseId));
    // Nothing may keep writing into a tree that is being unlinked.
    await options.killSessionProcesses(entry.sessionKey).catch((error: unknown) => options.log?.(`kill before release of ${entry.sessionKey} failed: ${String(error)}`));
    await releaseLease(entry);
  }

  /**
   * Tries a failed release again, by its lease alone. It kills nothing: the first attempt killed
   * (and awaited) every process of the runs that used the lease, and the session's processes now
   * belong to its later runs.
   */
  function retry(entry: LeaseRelease): Promise<void> {
    const leaseId = entry.lease.leaseId;
    let pending = retrying.get(leaseId);
    if (pending === undefined) {
      pending = releaseLease(entry).finally(() => retrying.delete(leaseId));
      retrying.set(leaseId, pending);
    }
    return pending;
  }

  function release(sessionKey: string, reason: ReleaseReason): Promise<void> {
    const slot = slots.get(sessionKey);
    if (slot === undefined) return Promise.resolve();
    idleTimers.cancel(sessionKey);
    return queueOf(sessionKey, slot).push(async () => {
      const lease = slot.lease;
      if (lease === undefined) return;
      slot.lease = undefined;
      leases.delete(sessionKey);
      await firstRelease({ sessionKey, lease, mode: slot.mode, reason });
    });
  }

  return {
    acquire(sessionKey, agentId, mode, signal) {
      const slot = slotFor(sessionKey, mode);
      idleTimers.cancel(sessionKey);
      slot.activity += 1;
      // Nothing queued: no release is pending on the lease held now.
      if (slot.lease !== undefined && slot.queue === undefined) return Promise.resolve(slot.lease);
      return queueOf(sessionKey, slot).push(() => (slot.lease === undefined ? doAcquire(sessionKey, agentId, mode, slot) : Promise.resolve(slot.lease)), signal);
    },
    current(sessionKey) {
      return slots.get(sessionKey)?.lease;
    },
    release,
    idle(sessionKey) {
      const slot = slots.get(sessionKey);
      if (slot === undefined || slot.lease === undefined) return Promise.resolve();
      if (options.idleTtlMs === 0) return release(sessionKey, "run-end");
      idleTimers.arm(sessionKey);
      return Promise.resolve();
    },
    busy(sessionKey) {
      const slot = slots.get(sessionKey);
      if (slot === undefined) return;
      idleTimers.cancel(sessionKey);
      slot.activity += 1;
    },
    async releaseAll(reason, timeoutMs) {
      const keys = [...slots.keys()];
      const pending = new Set<string>(keys);
      const retries = [...failed.values()].map((entry) => retry(entry).catch(() => undefined));
      // A few workers pull keys one at a time (10,000 removals at once cost ~440 MB of RSS for no
      // gain in time), and none takes another after the deadline: the shutdown then closes the
      // store and the providers, and what is left is the next start's collector's.
      let next = 0;
      let expired = false;
      const worker = async (): Promise<void> => {
        while (!expired && next < keys.length) {
          const key = keys[next++] as string;
          await release(key, reason)
            .catch((error: unknown) => options.log?.(`release of ${key} failed: ${String(error)}`))
            .finally(() => pending.delete(key));
        }
      };
      const all = Promise.all(Array.from({ length: Math.min(RELEASE_CONCURRENCY, keys.length) }, worker));
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([Promise.all([all, ...retries]), new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
      clearTimeout(timer);
      expired = true;
      return pending.size + failed.size;
    },
    live() {
      return leases;
    },
    async retryFailed() {
      for (const entry of [...failed.values()]) await retry(entry);
      return failed.size;
    },
  };
}
