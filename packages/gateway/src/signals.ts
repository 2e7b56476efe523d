import type { GatewayHandle } from "./gateway.ts";

/**
 * Graceful shutdown on SIGINT/SIGTERM: close the gateway (runs aborted, ephemeral workspaces
 * released, bounded by its shutdown timeout), then exit 0. A second signal exits at once with
 * 130/143; what is left is reclaimed by the next start's collector.
 */
export function closeOnSignals(handle: GatewayHandle, options: { log?: (line: string) => void; exit?: (code: number) => void } = {}): () => void {
  const exit = options.exit ?? ((code: number) => process.exit(code));
  let stopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    if (stopping) {
      exit(signal === "SIGINT" ? 130 : 143);
      return;
    }
    stopping = true;
    options.log?.(`${signal}: releasing workspaces and stopping`);
    handle.close(`${signal}`).then(
      () => exit(0),
      (error: unknown) => {
        options.log?.(`shutdown failed: ${error instanceof Error ? error.message : String(error)}`);
        exit(1);
      },
    );
  };
  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  return () => {
    process.off("SIGINT", onSignal);
    process.off("SIGTERM", onSignal);
  };
}
