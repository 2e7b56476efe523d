import { CONFIG_DEFAULTS } from "../config/defaults.ts";
import { type ConfigFlags, loadConfig } from "../config/load.ts";

/** Where a client connects and with which secret. */
export interface GatewayTarget {
  readonly url: string;
  readonly token: string | undefined;
}

/** Options of {@link resolveGatewayTarget}. */
export interface ResolveGatewayTargetOptions {
  /** `--url`: wins when given. */
  url?: string | undefined;
  /** `--token`: wins when given. */
  token?: string | undefined;
  /** `--config`, for the port and token of the local gateway's config. */
  configPath?: string | undefined;
  /** Default: `process.env`. */
  env?: NodeJS.ProcessEnv | undefined;
  /** Default: `process.cwd()`. */
  cwd?: string | undefined;
}

/**
 * The gateway a client talks to: `url` when given, else `ws://127.0.0.1:<gateway.port>` of the
 * local configuration (file and OCGW_PORT, as `loadConfig` reads them), else port 18789; the token
 * is `token`, else OCGW_GATEWAY_TOKEN, else the configuration's `gateway.auth.token`. A
 * configuration that cannot be loaded only costs its port and token: the defaults apply.
 */
export async function resolveGatewayTarget(options: ResolveGatewayTargetOptions = {}): Promise<GatewayTarget> {
  const env = options.env ?? process.env;
  const envToken = env["OCGW_GATEWAY_TOKEN"] === "" ? undefined : env["OCGW_GATEWAY_TOKEN"];
  if (options.url !== undefined && (options.token !== undefined || envToken !== undefined)) {
    return { url: options.url, token: options.token ?? envToken };
  }
  let port: number = CONFIG_DEFAULTS.gateway.port;
  let configToken: string | undefined;
  try {
    const flags: ConfigFlags = options.configPath === undefined ? {} : { configPath: options.configPath };
    const config = await loadConfig({ env, cwd: options.cwd, flags });
    if (config.gateway.port !== 0) port = config.gateway.port;
    configToken = config.gateway.auth.token;
  } catch {
    // No usable configuration: the documented defaults.
  }
  return { url: options.url ?? `ws://127.0.0.1:${port}`, token: options.token ?? envToken ?? configToken };
}
