/**
 * `node packages/gateway/src/main.ts`: the gateway on loopback with embedded defaults (config file,
 * env and defaults as docs/configuration.md describes), until SIGINT/SIGTERM.
 */
import { loadConfig } from "./config/index.ts";
import { startGateway } from "./gateway.ts";
import { closeOnSignals } from "./signals.ts";

const log = (line: string): void => console.error(`[ocgw] ${line}`);
try {
  const config = await loadConfig();
  const gateway = await startGateway(config, { log });
  closeOnSignals(gateway, { log });
  console.log(`ocgw gateway ready on ${gateway.url}`);
} catch (error) {
  console.error(`ocgw: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
