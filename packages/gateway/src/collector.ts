import { existsSync } from "node:fs";
import { realpath } from "node:fs/promises";
import * as path from "node:path";
import { type InstanceHandle, type LedgerClaim, type SweepEntry, type SweepProgress, type SweepResult, createLivenessProbe, memoizeLiveness, readMarker, nodeFsPort, safeRemove, sweep } from "@ocgw/workspace";
import { killMembers } from "./runners/descendants.ts";
import type { Store } from "./store/index.ts";

export interface CollectorOptions {
  /** The ledger to reconcile. Unset (offline, no database yet): the sweep alone. */
  store?: Store | undefined;
  /** The ephemeral root to sweep. */
  root: string;
  /**
   * The running gateway's instance, whose leases are alive by definition. Unset when the
   * collector runs offline (`ocgw workspaces gc`): every owner must then prove itself alive
   * through its liveness lock.
   */
  instance?: InstanceHandle | undefined;
  /** `workspace.ephemeral.staleMs`. */
  staleMs: number;
  /** Extra upkeep before each real (not dry-run) collection: the gateway retries failed releases and prunes old runs. */
  housekeeping?(): Promise<void>;
  log?(line: string): void;
}

/** SIGTERM, then SIGKILL after this long, for processes still working in a dead instance's workspace. */
const ORPHAN_KILL_GRACE_MS = 1000;

/**
 * A crashed gateway's runs outlive it: before dead instances' directories are removed, every
 * process of ours still working in one (its cwd inside; on Linux, through /proc) is stopped, with
 * its descendants, in one kill loop for all of them. The directories are private to ocgw (0700), so
 * whatever works there is a dead gateway's run. Elsewhere nothing can be found and removal goes
 * ahead. Resolves with the directories a process survived SIGKILL in: they stay for the next pass.
 */
async function stopProcessesIn(entries: readonly SweepEntry[]): Promise<ReadonlyMap<string, string>> {
  if (process.platform !== "linux") return new Map();
  const dirs = new Map<string, string>();
  for (const entry of entries) {
    const real = await realpath(entry.path).catch(() => undefined);
    if (real !== undefined) dirs.set(real, entry.path);
  }
  if (dirs.size === 0) return new Map();
  const survivors = await killMembers({ runs: [], dirs: [...dirs.keys()].map((dir) => ({ dir, sinceTicks: null, anyToken: true })) }, ORPHAN_KILL_GRACE_MS);
  const blocked = new Map<string, string>();
  for (const [dir, entryPath] of dirs) {
    const inside = survivors.filter((proc) => proc.cwd !== null && (proc.cwd === dir || proc.cwd.startsWith(`${dir}${path.sep}`)));
    if (inside.length > 0) blocked.set(entryPath, `processes still running in it after SIGKILL: ${inside.map((proc) => `${proc.pid} (${proc.name})`).join(", ")}`);
  }
  // A survivor found only through the process tree (its cwd elsewhere) keeps every directory: its run's is unknown.
  if (survivors.length > 0 && blocked.size === 0) for (const entryPath of dirs.values()) blocked.set(entryPath, `processes still running after SIGKILL: ${survivors.map((proc) => proc.pid).join(", ")}`);
  return blocked;
}

export interface CollectorReport {
  readonly sweep: SweepResult;
  /** Ledger rows of dead instances closed by this run (their directories are gone or were removed). */
  readonly ledgerReconciled: number;
}

export interface Collector {
  /** One collection: sweep the ephemeral root, then close the ledger rows of dead instances. */
  run(options?: { dryRun?: boolean; onProgress?: (progress: SweepProgress) => void }): Promise<CollectorReport>;
  /** Runs every `intervalMs` (0 = never) until stop(); overlapping runs are skipped. */
  start(intervalMs: number): void;
  stop(): void;
  /**
   * Stops the timer, refuses new runs, and resolves once every collection in flight (periodic,
   * `workspaces.gc`, start-up) has settled, so what it uses (the store, the root) can be closed
   * after it. Idempotent.
   */
  close(): Promise<void>;
}

const OPEN_STATES = ["acquiring", "live", "releasing", "failed"] as const;

/**
 * The gateway's collector: the workspace sweep (marker + liveness proof) plus what only the
 * ledger can prove. The ledger is proof too: a live lease row records its directory's path,
 * device and inode, so a directory whose marker is gone (an agent's `git clean -fdx`) is handed
 * to the sweep as ours by that row, and reclaimed once its instance is dead. A lease row recorded
 * by a dead instance whose directory never got its marker (a crash between mkdir and marker
 * write) names a path the ledger wrote before the directory existed: that row is the proof, so
 * the directory is removed safely too.
 *
 * Runs inside a gateway (`instance` set: its own leases are alive) or offline from
 * `ocgw workspaces gc` (no instance, optionally no store).
 */
export function createCollector(options: CollectorOptions): Collector {
  const { store, instance } = options;
  const root = path.resolve(options.root);
  const probe = createLivenessProbe({ root, staleMs: options.staleMs });
  let timer: ReturnType<typeof setInterval> | undefined;
  let running: Promise<CollectorReport> | undefined;
  let isClosed = false;
  const inFlight = new Set<Promise<unknown>>();

  /** Every collection goes through here, so close() can wait for it. */
  function track(dryRun: boolean, onProgress?: (progress: SweepProgress) => void): Promise<CollectorReport> {
    if (isClosed) return Promise.reject(new Error("the collector is closed: the gateway is shutting down"));
    const pending = collect(dryRun, onProgress);
    const settled = pending.then(
      () => undefined,
      () => undefined,
    );
    inFlight.add(settled);
    void settled.then(() => inFlight.delete(settled));
    return pending;
  }

  /** Open ephemeral leases whose directory identity the ledger holds, by path: the sweep's second proof. */
  function ledgerClaims(): Map<string, LedgerClaim> | undefined {
    if (store === undefined) return undefined;
    const claims = new Map<string, LedgerClaim>();
    for (const row of store.listLeases({ states: [...OPEN_STATES] })) {
      if (row.kind !== "ephemeral" || row.path === null || row.instanceId === null || row.dev === null || row.ino === null) continue;
      claims.set(path.resolve(row.path), { leaseId: row.leaseId, instanceId: row.instanceId, key: row.sessionKey, createdAt: row.createdAt, dev: row.dev, ino: row.ino });
    }
    return claims;
  }

  async function reconcile(removedBySweep: ReadonlySet<string>): Promise<number> {
    if (store === undefined) return 0;
    const isAlive = memoizeLiveness(probe, instance);
    let closed = 0;
    for (const row of store.listLeases({ states: [...OPEN_STATES] })) {
      if (row.instanceId === null || (await isAlive(row.instanceId))) continue;
      let outcome = row.kind !== "ephemeral" ? "kept" : row.path !== null && removedBySweep.has(path.resolve(row.path)) ? "removed" : "gone";
      if (row.kind === "ephemeral" && row.path !== null && existsSync(row.path)) {
        const marker = await readMarker(nodeFsPort, row.path);
        // The sweep owns marked directories and those the row's identity proves; an unmarked one is
        // ours only by this row (an acquire cut short), and must still be the directory the row recorded.
        if (marker.ok || (row.state !== "acquiring" && row.state !== "failed")) continue;
        const identity = row.dev !== null && row.ino !== null ? { dev: row.dev, ino: row.ino } : undefined;
        const removed = await safeRemove({ fs: nodeFsPort, root, target: row.path, identity, trashTag: instance?.id ?? "collector-offline" });
        if (removed.outcome !== "removed" && removed.outcome !== "gone") continue;
        outcome = removed.outcome;
      }
      if (store.markLeaseReleased(row.leaseId, { releasedAt: Date.now(), reason: "collector", outcome, error: null })) closed += 1;
    }
    return closed;
  }

  async function collect(dryRun: boolean, onProgress?: (progress: SweepProgress) => void): Promise<CollectorReport> {
    if (!dryRun) await options.housekeeping?.().catch((error: unknown) => options.log?.(`housekeeping: ${error instanceof Error ? error.message : String(error)}`));
    const result = await sweep({ root, instance, dryRun, staleMs: options.staleMs, onProgress, claims: ledgerClaims(), beforeReclaim: stopProcessesIn });
    const removed = new Set(result.entries.filter((entry) => entry.outcome === "removed").map((entry) => entry.path));
    const ledgerReconciled = dryRun ? 0 : await reconcile(removed);
    if (!dryRun && (result.reclaimed > 0 || ledgerReconciled > 0 || result.failed > 0)) {
      options.log?.(`collector: reclaimed ${result.reclaimed}, kept ${result.kept}, reported ${result.reported}, failed ${result.failed}, ledger rows closed ${ledgerReconciled}`);
    }
    return { sweep: result, ledgerReconciled };
  }

  return {
    run(runOptions = {}) {
      return track(runOptions.dryRun ?? false, runOptions.onProgress);
    },
    start(intervalMs) {
      if (intervalMs <= 0 || timer !== undefined) return;
      timer = setInterval(() => {
        if (running !== undefined) return;
        running = track(false)
          .catch((error: unknown) => {
            options.log?.(`collector: ${error instanceof Error ? error.message : String(error)}`);
            return undefined as unknown as CollectorReport;
          })
          .finally(() => (running = undefined));
      }, intervalMs);
      timer.unref();
    },
    stop() {
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
    },
    async close() {
      isClosed = true;
      this.stop();
      while (inFlight.size > 0) await Promise.all([...inFlight]);
    },
  };
}

/** One entry of a {@link GcSummary}: a sweep entry as plain JSON. */
export interface GcSummaryEntry {
  readonly path: string;
  /** `lease` (a marked workspace), `trash` (a `.trash-*` leftover) or `unknown` (not provably ours). */
  readonly kind: "lease" | "trash" | "unknown";
  /** reclaim: ours and dead; keep: ours and alive; report: not provably ours, never deleted. */
  readonly action: "reclaim" | "keep" | "report";
  readonly reason: string;
  /** For reclaim entries: planned (dry run), removed, gone, refused, failed or trashed. */
  readonly outcome: string | null;
  readonly sessionKey: string | null;
  readonly instanceId: string | null;
  readonly error: string | null;
}

/** A collection as plain JSON: the `workspaces.gc` result, and what `ocgw workspaces gc` prints. */
export interface GcSummary {
  readonly root: string;
  readonly dryRun: boolean;
  readonly reclaimed: number;
  readonly kept: number;
  readonly reported: number;
  readonly failed: number;
  readonly ledgerReconciled: number;
  readonly durationMs: number;
  readonly entries: GcSummaryEntry[];
}

/** The one mapping from a {@link CollectorReport} to its JSON shape. */
export function toGcSummary(report: CollectorReport): GcSummary {
  const sweepResult = report.sweep;
  return {
    root: sweepResult.root,
    dryRun: sweepResult.dryRun,
    reclaimed: sweepResult.reclaimed,
    kept: sweepResult.kept,
    reported: sweepResult.reported,
    failed: sweepResult.failed,
    ledgerReconciled: report.ledgerReconciled,
    durationMs: Math.round(sweepResult.durationMs),
    entries: sweepResult.entries.map((entry) => ({
      path: entry.path,
      kind: entry.kind,
      action: entry.action,
      reason: entry.reason,
      outcome: entry.outcome ?? null,
      sessionKey: entry.key ?? null,
      instanceId: entry.instanceId ?? null,
      error: entry.error?.message ?? null,
    })),
  };
}
