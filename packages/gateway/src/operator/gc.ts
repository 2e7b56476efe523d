import type { SweepProgress } from "@ocgw/workspace";
import type { GatewayClient } from "../client/connect.ts";
import { remoteErrorCode, remoteErrorOf } from "../client/connect.ts";
import { type GcSummary, createCollector, toGcSummary } from "../collector.ts";
import { type OfflineOptions, loadOfflineTarget, openExistingStore, retryWhileBusy } from "./common.ts";

/** Options of {@link collectWorkspaces}. */
export interface CollectOptions extends OfflineOptions {
  /** Decide and report, delete nothing, close no ledger row. Default false. */
  dryRun?: boolean | undefined;
  /** Called after each entry is classified (`scan`) and after each removal (`reclaim`). */
  onProgress?: ((progress: SweepProgress) => void) | undefined;
}

/**
 * The collector without a running gateway (`ocgw workspaces gc`): sweeps the configured
 * ephemeral root — reclaiming only directories whose marker names them, or (marker gone) whose
 * path, device and inode a lease row in `<stateDir>/ocgw.sqlite` recorded, and whose owner
 * instance is proven dead, and `.trash-*` leftovers of dead instances — then closes the ledger
 * rows of dead instances (when the state dir has a ledger). Safe next to a running
 * gateway: its leases are alive, and one collector runs per root at a time.
 *
 * @throws GatewayError CONFIG_* when the configuration does not load; WorkspaceError
 *   `WS_ROOT_UNSAFE` for an unsafe root, `WS_GC_BUSY` when another collector keeps the lock.
 */
export async function collectWorkspaces(options: CollectOptions = {}): Promise<GcSummary> {
  const target = await loadOfflineTarget(options);
  const store = openExistingStore(target.storePath);
  try {
    const collector = createCollector({ store, root: target.root, staleMs: target.staleMs });
    const report = await retryWhileBusy(() => collector.run({ dryRun: options.dryRun ?? false, onProgress: options.onProgress }));
    return toGcSummary(report);
  } finally {
    store?.close();
  }
}

/** `workspaces.gc` on a running gateway (the connection needs operator.admin). */
export async function collectWorkspacesViaGateway(client: GatewayClient, options: { dryRun?: boolean | undefined } = {}): Promise<GcSummary> {
  return retryWhileBusy(
    () => client.call<GcSummary>("workspaces.gc", { dryRun: options.dryRun ?? false }, { timeoutMs: 10 * 60_000 }),
    (error) => {
      const remote = remoteErrorOf(error);
      return remote !== undefined && remoteErrorCode(remote) === "WS_GC_BUSY";
    },
  );
}
