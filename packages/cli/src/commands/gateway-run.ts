import { type GatewayHandle, closeOnSignals, loadConfig, startGateway } from "@ocgw/gateway";
import { type Command, Option } from "commander";
import type { CommandContext } from "../io.ts";
import { integerIn } from "../options.ts";

interface GatewayRunOptions {
  port?: number;
  bind?: string;
  token?: string;
  stateDir?: string;
  config?: string;
}

/** `ocgw gateway run`: the gateway in the foreground until SIGINT/SIGTERM (or io.signal). */
export function registerGatewayRun(gateway: Command, ctx: CommandContext): void {
  gateway
    .command("run")
    .description("run the gateway in the foreground; SIGINT/SIGTERM stop it and release every ephemeral workspace")
    .addOption(new Option("--port <n>", "TCP port (0 = any free port; default $OCGW_PORT, the config's, 18789)").argParser(integerIn(0, 65_535)))
    .addOption(new Option("--bind <mode>", "listen on loopback (127.0.0.1) or lan (0.0.0.0; refused with gateway.auth.mode \"none\")").choices(["loopback", "lan"]))
    .addOption(new Option("--token <token>", "shared secret clients must send (default $OCGW_GATEWAY_TOKEN, the config's)"))
    .addOption(new Option("--state-dir <dir>", "state directory (default $OCGW_STATE_DIR, the config's stateDir, ~/.ocgw)"))
    .addOption(new Option("--config <file>", "config file, JSON5 (default $OCGW_CONFIG, ~/.ocgw/ocgw.json)"))
    .action(async (options: GatewayRunOptions) => {
      const { io } = ctx;
      const config = await loadConfig({
        env: io.env,
        cwd: io.cwd,
        flags: { configPath: options.config, port: options.port, bind: options.bind, token: options.token, stateDir: options.stateDir },
      });
      const log = (line: string): void => {
        io.stderr.write(`[ocgw] ${line}\n`);
      };
      const handle = await startGateway(config, { log });
      let settle!: (code: number) => void;
      const stopped = new Promise<number>((resolve) => (settle = resolve));
      // closeOnSignals exits 0/1 after a graceful close and 130/143 on a second signal: only the latter is a hard exit.
      const detach = closeOnSignals(handle, { log, exit: (code) => (code === 0 || code === 1 ? settle(code) : io.exit(code)) });
      const onAbort = (): void => {
        log("stopping: releasing workspaces");
        handle.close("stopped").then(
          () => settle(0),
          (error: unknown) => {
            log(`shutdown failed: ${error instanceof Error ? error.message : String(error)}`);
            settle(1);
          },
        );
      };
      if (io.signal?.aborted === true) onAbort();
      else io.signal?.addEventListener("abort", onAbort, { once: true });
      io.stdout.write(`ocgw gateway ready on ${handle.url} (${authSummary(handle)}; workspace.implicit=${config.workspace.implicit})\n`);
      const code = await stopped;
      detach();
      io.signal?.removeEventListener("abort", onAbort);
      ctx.setExitCode(code);
    });
}

/** Where clients get their credential, for the ready line: the token file's path, never the token. */
function authSummary(handle: GatewayHandle): string {
  if (handle.config.gateway.auth.mode === "none") return 'auth: none (gateway.auth.mode "none")';
  return handle.tokenFile === undefined ? "auth: token (gateway.auth.token)" : `auth: token in ${handle.tokenFile}`;
}
