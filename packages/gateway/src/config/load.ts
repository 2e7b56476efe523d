import { readFile } from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import JSON5 from "json5";
import { GatewayError } from "../errors.ts";
import { bindHost, isLoopbackBind } from "./bind.ts";
import { CONFIG_DEFAULTS, DEFAULT_AGENT_ID, DEFAULT_CONFIG_FILE, deepFreeze } from "./defaults.ts";
import { type ConfigIssue, configErrorMap, configInvalidError, toConfigIssues } from "./issues.ts";
import { type GatewayConfig, configSchema } from "./schema.ts";
import { isRecord } from "../util/guards.ts";
import { errnoCode } from "@ocgw/workspace";

/**
 * The configuration the gateway runs with: the schema's output with every path absolute, plus
 * what was derived from it. Deep-frozen: any attempt to mutate it throws.
 */
export interface ResolvedConfig extends GatewayConfig {
  /** The absolute path of the config file actually read, or `null` when none was. */
  readonly configPath: string | null;
  /** The default agent: `agents.default`, else the entry with `default: true`, else the only entry, else `"main"`. */
  readonly defaultAgentId: string;
  /** The configured agent ids in file order; `["main"]` when `agents.entries` is empty. */
  readonly agentIds: readonly string[];
}

/** Where relative paths and `~` point. */
export interface ResolveContext {
  /** Base of relative paths. Default: `process.cwd()`. */
  cwd?: string | undefined;
  /** What `~` expands to. Default: `os.homedir()`. */
  homedir?: string | undefined;
}

/** Command-line flags; each one, when given, beats the environment, the file and the defaults. */
export interface ConfigFlags {
  /** `--config`: the config file to read (must exist). */
  configPath?: string | undefined;
  /** `--port`: `gateway.port`. */
  port?: number | undefined;
  /** `--bind`: `gateway.bind`. */
  bind?: string | undefined;
  /** `--token`: `gateway.auth.token`. */
  token?: string | undefined;
  /** `--state-dir`: `stateDir`. */
  stateDir?: string | undefined;
}

/** Options of {@link loadConfig}. */
export interface LoadConfigOptions extends ResolveContext {
  /** Command-line flags, the highest-precedence layer. */
  flags?: ConfigFlags | undefined;
  /** The environment to read `OCGW_*` variables from. Default: `process.env`. */
  env?: NodeJS.ProcessEnv | undefined;
}

/** Environment variables read by {@link loadConfig} and the key each one sets. */
export const CONFIG_ENV_VARS = {
  OCGW_CONFIG: "(the config file to read)",
  OCGW_STATE_DIR: "stateDir",
  OCGW_GATEWAY_TOKEN: "gateway.auth.token",
  OCGW_PORT: "gateway.port",
  OCGW_OPENAI_BASE_URL: "runner.openai.baseUrl",
  OCGW_OPENAI_MODEL: "runner.openai.model",
} as const;

type KeyPath = readonly string[];

interface Layering {
  /** The merged document to validate. */
  document: unknown;
  /** The source of every key an environment variable or a flag set, by dotted path. */
  sources: Map<string, string>;
  /** Problems found before validation (an unparsable OCGW_PORT), by dotted path. */
  preIssues: Map<string, ConfigIssue>;
  /** The source of everything else. */
  baseSource: string;
  configPath: string | null;
}

/**
 * Validates a configuration object given in code (every key optional; `undefined` = all
 * defaults), applies the defaults, expands `~` and resolves relative paths against `cwd`,
 * computes the default agent and deep-freezes the result.
 *
 * @throws GatewayError `CONFIG_INVALID` listing every problem with its path (also in `details.issues`).
 * @throws GatewayError `INSECURE_BIND` for a non-loopback `gateway.bind` with `gateway.auth.mode: "none"`.
 */
export function resolveConfig(input: unknown, context: ResolveContext = {}): ResolvedConfig {
  return finish(
    { document: input === undefined ? {} : input, sources: new Map(), preIssues: new Map(), baseSource: "input", configPath: null },
    context,
  );
}

/**
 * Loads the configuration at start-up. The layers, lowest precedence first:
 *
 * 1. defaults ({@link CONFIG_DEFAULTS});
 * 2. the JSON5 file: `flags.configPath`, else `env.OCGW_CONFIG`, else `~/.ocgw/ocgw.json`. A
 *    missing default file is fine (no file layer); a missing explicit one is `CONFIG_UNREADABLE`;
 * 3. the environment: `OCGW_STATE_DIR`, `OCGW_GATEWAY_TOKEN`, `OCGW_PORT`, `OCGW_OPENAI_BASE_URL`,
 *    `OCGW_OPENAI_MODEL`, and the variable named by `runner.openai.apiKeyEnv` (→ `apiKey`). Empty
 *    variables count as unset;
 * 4. the flags.
 *
 * So flags > env > file > defaults, key by key. Only the effective value of a key is validated:
 * a value a higher layer replaced is ignored. The merged document is validated once, then
 * resolved as {@link resolveConfig} does.
 *
 * @throws GatewayError `CONFIG_UNREADABLE` (file missing when named, unreadable, empty, or not JSON5 — with line and column).
 * @throws GatewayError `CONFIG_INVALID` listing every problem with its path and source (`env OCGW_PORT`, `flag --port`, the file).
 * @throws GatewayError `INSECURE_BIND` for a non-loopback bind with auth mode "none".
 */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<ResolvedConfig> {
  const env = options.env ?? process.env;
  const flags = options.flags ?? {};
  const cwd = path.resolve(options.cwd ?? process.cwd());
  const homedir = options.homedir ?? os.homedir();

  // 2. The file.
  const named = nonEmpty(flags.configPath) !== undefined ? "--config" : nonEmpty(env["OCGW_CONFIG"]) !== undefined ? "OCGW_CONFIG" : undefined;
  const configPath = expandPath(nonEmpty(flags.configPath) ?? nonEmpty(env["OCGW_CONFIG"]) ?? DEFAULT_CONFIG_FILE, cwd, homedir);
  const text = await readConfigFile(configPath, named);
  const layering: Layering = {
    document: text === null ? {} : parseConfigText(text, configPath),
    sources: new Map(),
    preIssues: new Map(),
    baseSource: text === null ? "defaults" : `file ${configPath}`,
    configPath: text === null ? null : configPath,
  };

  // 3. The environment.
  const fromEnv = (name: string): string | undefined => nonEmpty(env[name]);
  overlay(layering, ["stateDir"], fromEnv("OCGW_STATE_DIR"), "env OCGW_STATE_DIR");
  overlay(layering, ["gateway", "auth", "token"], fromEnv("OCGW_GATEWAY_TOKEN"), "env OCGW_GATEWAY_TOKEN");
  const rawPort = fromEnv("OCGW_PORT");
  if (rawPort !== undefined) {
    const port = /^\s*\d{1,5}\s*$/.test(rawPort) ? Number(rawPort) : Number.NaN;
    if (port >= 0 && port <= 65_535) overlay(layering, ["gateway", "port"], port, "env OCGW_PORT");
    else {
      layering.preIssues.set("gateway.port", {
        path: "gateway.port",
        message: `must be an integer from 0 to 65535 (0 = any free port); got ${JSON.stringify(rawPort)}`,
        source: "env OCGW_PORT",
      });
    }
  }
  overlay(layering, ["runner", "openai", "baseUrl"], fromEnv("OCGW_OPENAI_BASE_URL"), "env OCGW_OPENAI_BASE_URL");
  overlay(layering, ["runner", "openai", "model"], fromEnv("OCGW_OPENAI_MODEL"), "env OCGW_OPENAI_MODEL");
  const keyEnv = apiKeyEnvOf(layering.document);
  overlay(layering, ["runner", "openai", "apiKey"], fromEnv(keyEnv), `env ${keyEnv}`);

  // 4. The flags.
  overlay(layering, ["stateDir"], flags.stateDir, "flag --state-dir");
  overlay(layering, ["gateway", "port"], flags.port, "flag --port");
  overlay(layering, ["gateway", "bind"], flags.bind, "flag --bind");
  overlay(layering, ["gateway", "auth", "token"], flags.token, "flag --token");

  // 1. The defaults, applied by the schema.
  return finish(layering, { cwd, homedir });
}

/** An environment variable or flag as a value: an empty string counts as unset. */
export function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === "" ? undefined : value;
}

/** `~` and `~/x` → under `homedir`; anything else resolved against `cwd`. */
function expandPath(value: string, cwd: string, homedir: string): string {
  if (value === "~") return path.resolve(homedir);
  if (value.startsWith("~/") || (path.sep === "\\" && value.startsWith("~\\"))) return path.resolve(homedir, value.slice(2));
  return path.resolve(cwd, value);
}

/** The file's text, or `null` when the default file is missing. */
async function readConfigFile(file: string, namedBy: string | undefined): Promise<string | null> {
  try {
    return await readFile(file, "utf8");
  } catch (error) {
    const code = errnoCode(error);
    if (namedBy === undefined && code === "ENOENT") return null;
    const what = namedBy === undefined ? "the config file" : `the config file named by ${namedBy}`;
    const why = code === "ENOENT" ? "it does not exist" : code === "EISDIR" ? "it is a directory" : (code ?? (error instanceof Error ? error.message : String(error)));
    throw new GatewayError("CONFIG_UNREADABLE", `Cannot read ${what}, ${file}: ${why}`, { cause: error, details: { path: file, errno: code } });
  }
}

/** Parses JSON5; syntax errors name the file, line and column. */
function parseConfigText(text: string, file: string): unknown {
  if (text.trim() === "") {
    throw new GatewayError("CONFIG_UNREADABLE", `The config file ${file} is empty`, {
      fix: "Write {} to use every default, or a JSON5 object of settings (docs/configuration.md)",
      details: { path: file },
    });
  }
  try {
    return JSON5.parse(text);
  } catch (error) {
    const { lineNumber: line, columnNumber: column } = error as { lineNumber?: unknown; columnNumber?: unknown };
    if (!(error instanceof SyntaxError) || typeof line !== "number" || typeof column !== "number") throw error;
    const reason = error.message.replace(/^JSON5: /, "").replace(/ at \d+:\d+$/, "");
    throw new GatewayError("CONFIG_UNREADABLE", `The config file ${file} is not valid JSON5: ${reason} at line ${line}, column ${column}`, {
      cause: error,
      details: { path: file, line, column },
    });
  }
}

/** `document` with `keys` set to `value`, copied along the way; a non-object on the way is left for the schema to report. */
function setIn(document: unknown, keys: KeyPath, value: unknown): { document: unknown; applied: boolean } {
  const [head, ...rest] = keys;
  if (head === undefined) return { document: value, applied: true };
  if (document !== undefined && !isRecord(document)) return { document, applied: false };
  const base = document ?? {};
  const inner = setIn(base[head], rest, value);
  return inner.applied ? { document: { ...base, [head]: inner.document }, applied: true } : { document, applied: false };
}

/** Applies one env or flag value (skipped when `undefined`) and records where it came from. */
function overlay(layering: Layering, keys: KeyPath, value: unknown, source: string): void {
  if (value === undefined) return;
  const result = setIn(layering.document, keys, value);
  if (!result.applied) return;
  const key = keys.join(".");
  layering.document = result.document;
  layering.sources.set(key, source);
  layering.preIssues.delete(key); // a higher layer replaced the bad value
}

/** The `runner.openai.apiKeyEnv` of the merged document, when valid; else the default. */
function apiKeyEnvOf(document: unknown): string {
  const runner = isRecord(document) ? document["runner"] : undefined;
  const openai = isRecord(runner) ? runner["openai"] : undefined;
  const name = isRecord(openai) ? openai["apiKeyEnv"] : undefined;
  return typeof name === "string" && /^[A-Za-z_][A-Za-z0-9_]*$/.test(name) ? name : CONFIG_DEFAULTS.runner.openai.apiKeyEnv;
}

function sourceFinder(layering: Layering): (issuePath: readonly PropertyKey[]) => string {
  return (issuePath) => {
    for (let length = issuePath.length; length > 0; length--) {
      const source = layering.sources.get(issuePath.slice(0, length).map(String).join("."));
      if (source !== undefined) return source;
    }
    return layering.baseSource;
  };
}

/** Validates once, resolves paths, derives the agent fields, checks the bind, deep-freezes. */
function finish(layering: Layering, context: ResolveContext): ResolvedConfig {
  const result = configSchema.safeParse(layering.document, { error: configErrorMap, reportInput: true });
  const issues = [...layering.preIssues.values(), ...(result.success ? [] : toConfigIssues(result.error.issues, sourceFinder(layering)))];
  if (!result.success || issues.length > 0) throw configInvalidError(issues, layering.baseSource, layering.configPath);

  const config = result.data;
  const cwd = path.resolve(context.cwd ?? process.cwd());
  const homedir = context.homedir ?? os.homedir();
  const resolvePath = (value: string): string => expandPath(value, cwd, homedir);
  config.stateDir = resolvePath(config.stateDir);
  if (config.agents.defaults.workspace !== undefined) config.agents.defaults.workspace = resolvePath(config.agents.defaults.workspace);
  for (const entry of Object.values(config.agents.entries)) {
    if (entry.workspace !== undefined) entry.workspace = resolvePath(entry.workspace);
  }
  if (config.workspace.ephemeral.root !== undefined) config.workspace.ephemeral.root = resolvePath(config.workspace.ephemeral.root);

  const { bind, auth } = config.gateway;
  if (!isLoopbackBind(bind) && auth.mode === "none") {
    const source = sourceFinder(layering)(["gateway", "bind"]);
    throw new GatewayError(
      "INSECURE_BIND",
      `gateway.bind is "${bind}" (listening on ${bindHost(bind)}${source === "input" ? "" : `; set by ${source}`}), which accepts connections from other machines, but gateway.auth.mode is "none"`,
      { details: { bind, host: bindHost(bind), source } },
    );
  }

  const ids = Object.keys(config.agents.entries);
  const marked = ids.find((id) => config.agents.entries[id]?.default === true);
  const resolved: ResolvedConfig = {
    ...config,
    configPath: layering.configPath,
    defaultAgentId: config.agents.default ?? marked ?? (ids.length === 1 ? ids[0] : undefined) ?? DEFAULT_AGENT_ID,
    agentIds: ids.length > 0 ? ids : [DEFAULT_AGENT_ID],
  };
  deepFreeze(resolved);
  return resolved;
}
