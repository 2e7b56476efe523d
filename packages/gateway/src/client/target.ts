import { readTokenFile } from "../auth/token-file.ts";
import { CONFIG_DEFAULTS } from "../config/defaults.ts";
import { isLoopbackAddress } from "../config/bind.ts";
import { type ConfigFlags, loadConfig, nonEmpty, resolveConfig } from "../config/load.ts";

/** Where a client connects and with which secret. */
export interface GatewayTarget {
  readonly url: string;
  readonly token: string | undefined;
}

/** Options of {@link resolveGatewayTarget}. */
export interface ResolveGatewayTargetOptions {
  /** `--url`: wins when given. */
  url?: string | undefined;
  /** `--token`: wins when given, and is the only token ever sent to a gateway other than the local one. */
  token?: string | undefined;
  /** `--config`, for the port, token and state dir of the local gateway's config. */
  configPath?: string | undefined;
  /** Default: `process.env` (also its HOME, for `~`). */
  env?: NodeJS.ProcessEnv | undefined;
  /** Default: `process.cwd()`. */
  cwd?: string | undefined;
}

/** What a client needs to know of the local configuration. */
interface LocalGateway {
  readonly port: number;
  readonly token: string | undefined;
  /** False for `gateway.auth.mode: "none"`: there is no token file to look for. */
  readonly tokenMode: boolean;
  readonly stateDir: string;
}

/**
 * The gateway a client talks to, and the token it may send there.
 *
 * The *local gateway* is `ws://127.0.0.1:<gateway.port>` of the local configuration (file and
 * environment, as `loadConfig` reads them; port 18789 when the configuration cannot be loaded or
 * says 0). A `url` is the local gateway only when it is `ws:` to a loopback host (`localhost`,
 * 127.x.y.z, `[::1]`) on that port; any other `url` is *another gateway*.
 *
 * - Another gateway gets `token` (the explicit `--token`) or nothing: never OCGW_GATEWAY_TOKEN, the
 *   configuration's token nor the token file, which are secrets of the local gateway.
 * - The local gateway (no `url`, or a local one) gets `token`, else OCGW_GATEWAY_TOKEN, else the
 *   configuration's `gateway.auth.token`, else (unless `gateway.auth.mode` is `"none"`) the token
 *   file `<stateDir>/gateway.token`.
 *
 * A configuration that cannot be loaded only costs its port and token: the defaults apply (the
 * state dir is OCGW_STATE_DIR, else `~/.ocgw`).
 *
 * @throws GatewayError `AUTH_TOKEN_FILE` when the token file would be used but must not be trusted.
 */
export async function resolveGatewayTarget(options: ResolveGatewayTargetOptions = {}): Promise<GatewayTarget> {
  const env = options.env ?? process.env;
  const local = await localGateway(options, env);
  const url = options.url ?? `ws://127.0.0.1:${local.port}`;
  if (options.token !== undefined || !isLocalUrl(url, local.port)) return { url, token: options.token };
  const token = nonEmpty(env["OCGW_GATEWAY_TOKEN"]) ?? local.token;
  if (token !== undefined || !local.tokenMode) return { url, token };
  return { url, token: (await readTokenFile(local.stateDir))?.token };
}

/** The local configuration's port, token, auth mode and state dir; the defaults when it cannot be loaded. */
async function localGateway(options: ResolveGatewayTargetOptions, env: NodeJS.ProcessEnv): Promise<LocalGateway> {
  const context = { cwd: options.cwd, homedir: nonEmpty(env["HOME"]) };
  try {
    const flags: ConfigFlags = options.configPath === undefined ? {} : { configPath: options.configPath };
    const config = await loadConfig({ env, flags, ...context });
    const { port, auth } = config.gateway;
    return { port: port === 0 ? CONFIG_DEFAULTS.gateway.port : port, token: auth.token, tokenMode: auth.mode !== "none", stateDir: config.stateDir };
  } catch {
    // No usable configuration: the documented defaults, in the state dir the environment names.
    const { stateDir } = resolveConfig({ stateDir: nonEmpty(env["OCGW_STATE_DIR"]) }, context);
    return { port: CONFIG_DEFAULTS.gateway.port, token: undefined, tokenMode: true, stateDir };
  }
}

/** True for `ws:` to a loopback host (`localhost`, 127.x.y.z, `[::1]`) on `port`. */
function isLocalUrl(url: string, port: number): boolean {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  const host = parsed.hostname.toLowerCase();
  const loopback = host === "localhost" || isLoopbackAddress(host.replace(/^\[(.*)\]$/, "$1"));
  return parsed.protocol === "ws:" && loopback && (parsed.port === "" ? 80 : Number(parsed.port)) === port;
}
