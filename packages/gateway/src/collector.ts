import { existsSync } from "node:fs";
import { type EphemeralProvider, type SweepProgress, type SweepResult, createLivenessProbe, readMarker, nodeFsPort, safeRemove, sweep } from "@ocgw/workspace";
import type { Store } from "./store/index.ts";

export interface CollectorOptions {
  store: Store;
  ephemeral: EphemeralProvider;
  /** `workspace.ephemeral.staleMs`. */
  staleMs: number;
  log?(line: string): void;
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
}

const OPEN_STATES = ["acquiring", "live", "releasing", "failed"] as const;

/**
 * The gateway's collector: the workspace sweep (marker + liveness proof) plus what only the
 * ledger can prove. A lease row recorded by a dead instance whose directory never got its marker
 * (a crash between mkdir and marker write) names a path the ledger wrote before the directory
 * existed: that row is the proof, so the directory is removed safely too.
 */
export function createCollector(options: CollectorOptions): Collector {
  const { store, ephemeral } = options;
  const probe = createLivenessProbe({ root: ephemeral.root, staleMs: options.staleMs });
  let timer: ReturnType<typeof setInterval> | undefined;
  let running: Promise<CollectorReport> | undefined;

  async function reconcile(): Promise<number> {
    const alive = new Map<string, Promise<boolean>>();
    const isAlive = (id: string): Promise<boolean> => {
      if (id === ephemeral.instance.id) return Promise.resolve(true);
      let known = alive.get(id);
      if (known === undefined) alive.set(id, (known = probe.isAlive(id)));
      return known;
    };
    let closed = 0;
    for (const row of store.listLeases({ states: [...OPEN_STATES] })) {
      if (row.instanceId === null || (await isAlive(row.instanceId))) continue;
      let outcome = row.kind === "ephemeral" ? "gone" : "kept";
      if (row.kind === "ephemeral" && row.path !== null && existsSync(row.path)) {
        const marker = await readMarker(nodeFsPort, row.path);
        if (marker.ok || row.state !== "acquiring") continue; // the sweep owns marked directories
        const removed = await safeRemove({ fs: nodeFsPort, root: ephemeral.root, target: row.path, trashTag: ephemeral.instance.id });
        if (removed.outcome !== "removed" && removed.outcome !== "gone") continue;
        outcome = removed.outcome;
      }
      if (store.markLeaseReleased(row.leaseId, { releasedAt: Date.now(), reason: "collector", outcome, error: null })) closed += 1;
    }
    return closed;
  }

  async function collect(dryRun: boolean, onProgress?: (progress: SweepProgress) => void): Promise<CollectorReport> {
    const result = await sweep({ root: ephemeral.root, instance: ephemeral.instance, dryRun, staleMs: options.staleMs, onProgress });
    const ledgerReconciled = dryRun ? 0 : await reconcile();
    if (!dryRun && (result.reclaimed > 0 || ledgerReconciled > 0 || result.failed > 0)) {
      options.log?.(`collector: reclaimed ${result.reclaimed}, kept ${result.kept}, reported ${result.reported}, failed ${result.failed}, ledger rows closed ${ledgerReconciled}`);
    }
    return { sweep: result, ledgerReconciled };
  }

  return {
    run(runOptions = {}) {
      return collect(runOptions.dryRun ?? false, runOptions.onProgress);
    },
    start(intervalMs) {
      if (intervalMs <= 0 || timer !== undefined) return;
      timer = setInterval(() => {
        if (running !== undefined) return;
        running = collect(false)
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
  };
}
