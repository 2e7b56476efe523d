/**
 * How a gateway stops: the cleanup stack that undoes a start (in reverse, on failure or at the
 * end of shutdown) and the graceful close sequence.
 */
import type { Collector } from "./collector.ts";
import { GatewayError } from "./errors.ts";
import type { ProtocolServer } from "./protocol/index.ts";
import type { RunManager } from "./runs/run-manager.ts";
import type { WorkspaceLifecycle } from "./sessions/workspaces.ts";

export type Cleanup = () => Promise<void> | void;

/** Closers registered as resources open; `unwind()` runs them last-in first-out, once. */
export interface CleanupStack {
  defer(cleanup: Cleanup): void;
  /** Runs every cleanup in reverse order; a cleanup's rejection is ignored so the rest still run. */
  unwind(): Promise<void>;
}

export function createCleanupStack(): CleanupStack {
  const cleanups: Cleanup[] = [];
  return {
    defer: (cleanup) => void cleanups.push(cleanup),
    async unwind() {
      for (const cleanup of cleanups.reverse()) await Promise.resolve(cleanup()).catch(() => undefined);
    },
  };
}

export interface ShutdownDeps {
  collector: Collector;
  protocol: ProtocolServer;
  runs: RunManager;
  lifecycle: WorkspaceLifecycle;
  /** Awaited before the collector closes; must not reject. */
  startupCollection: Promise<unknown>;
  cleanups: CleanupStack;
  /** Bound on aborting runs and releasing workspaces (releases get at least 1,000 ms), in ms. */
  timeoutMs: number;
  log: (line: string) => void;
}

/**
 * The close sequence, in order: stop the collector's timer; close the protocol server (shutdown
 * event, 1012 to every socket); abort runs with GATEWAY_CLOSING; release every workspace within
 * what is left of the timeout; wait for the start-up collection and any collection in flight
 * (they use the store); unwind the cleanups (runner, ephemeral provider, store).
 */
async function shutdown(deps: ShutdownDeps, reason: string): Promise<void> {
  const started = Date.now();
  deps.collector.stop();
  await deps.protocol.close({ reason });
  await deps.runs.shutdown(new GatewayError("GATEWAY_CLOSING", "the gateway is shutting down", { fix: null }), deps.timeoutMs);
  const left = await deps.lifecycle.releaseAll("shutdown", Math.max(1000, deps.timeoutMs - (Date.now() - started)));
  if (left > 0) deps.log(`${left} workspace(s) not released before the shutdown deadline; the next start's collector reclaims them`);
  await deps.startupCollection;
  // A collection still running (periodic, workspaces.gc) uses the store: let it finish first.
  await deps.collector.close();
  await deps.cleanups.unwind();
}

/** The gateway's `close(reason)`: runs {@link shutdown} once; later calls get the same promise. */
export function createShutdown(deps: ShutdownDeps): (reason?: string) => Promise<void> {
  let closing: Promise<void> | undefined;
  return (reason = "gateway stopping") => (closing ??= shutdown(deps, reason));
}
