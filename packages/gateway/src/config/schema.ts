import { z } from "zod";
import { isValidBind } from "./bind.ts";
import { CONFIG_DEFAULTS, DEFAULT_AGENT_ID, type DeepReadonly } from "./defaults.ts";
import { isRecord } from "../util/guards.ts";

/** Agent ids: 1–64 characters, lowercase letters, digits, `_` and `-`, starting with a letter or digit. */
export const AGENT_ID_PATTERN = /^[a-z0-9][a-z0-9_-]{0,63}$/;

/** The largest delay `setTimeout` honours (2^31 − 1 ms, about 24.8 days); longer ones fire at once. */
export const MAX_TIMER_MS = 2_147_483_647;

/** The longest `gateway.deltaWindowMs`: a minute; a longer window would stop a reply from streaming at all. */
export const MAX_DELTA_WINDOW_MS = 60_000;

/** Values of `workspace.implicit`. */
export const IMPLICIT_WORKSPACE_MODES = ["ephemeral", "agent", "persistent", "none"] as const;
/** Values of `runner.kind`. */
export const RUNNER_KINDS = ["echo", "command", "openai"] as const;

/** Values of `gateway.auth.mode`. */
export const AUTH_MODES = ["token", "none"] as const;

const D = CONFIG_DEFAULTS;
const ORIGIN_RULE = 'must be an origin: scheme, host and optional port, such as "https://ui.example.com" or "http://127.0.0.1:5173" (no path, no trailing slash)';

/** True for `scheme://host[:port]` exactly as a browser sends it in an Origin header. */
function isOrigin(value: string): boolean {
  try {
    const url = new URL(value);
    return (url.protocol === "http:" || url.protocol === "https:") && url.origin === value;
  } catch {
    return false;
  }
}
const AGENT_ID_RULE = `must be an agent id: 1 to 64 lowercase letters, digits, "_" or "-", starting with a letter or digit (${AGENT_ID_PATTERN.source})`;
const NON_EMPTY = "must be a non-empty string";
const PATH_RULE = 'must be a non-empty path (absolute, relative to the working directory, or starting with "~")';

/** `must be one of "a", "b"`, the wording every enum error uses. */
function oneOfRule(values: readonly string[]): string {
  return `must be one of ${values.map((value) => JSON.stringify(value)).join(", ")}`;
}

function oneOf<const T extends readonly [string, ...string[]]>(values: T) {
  return z.enum(values, { error: oneOfRule(values) });
}

function integer(min: number, max: number, note = "") {
  const rule = `must be an integer from ${min} to ${max}${note}`;
  return z.number({ error: rule }).int({ error: rule }).min(min, { error: rule }).max(max, { error: rule });
}

/** Milliseconds between `min` and the timer ceiling. */
function millis(min: number, note = "") {
  return integer(min, MAX_TIMER_MS, ` (milliseconds${note})`);
}

function nonEmpty(rule = NON_EMPTY) {
  return z.string({ error: rule }).min(1, { error: rule });
}

function pathString() {
  return nonEmpty(PATH_RULE);
}

function strictObject<S extends z.core.$ZodLooseShape>(shape: S) {
  return z.strictObject(shape, { error: "must be an object ({ ... })" });
}

/** `15 min`, `30 s`, `250 ms`. */
function humanMs(ms: number): string {
  if (ms !== 0 && ms % 60_000 === 0) return `${ms / 60_000} min`;
  if (ms !== 0 && ms % 1000 === 0) return `${ms / 1000} s`;
  return `${ms} ms`;
}

/** `25 MiB`, `16 KiB`, `1000 bytes`. */
function humanBytes(bytes: number): string {
  if (bytes !== 0 && bytes % (1024 * 1024) === 0) return `${bytes / (1024 * 1024)} MiB`;
  if (bytes !== 0 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} bytes`;
}

/** The description of a key: what it is, then its default quoted from {@link CONFIG_DEFAULTS}. */
function doc(text: string, value: unknown, unit?: "ms" | "bytes"): string {
  let shown = value === undefined ? "unset" : JSON.stringify(value);
  if (unit === "ms" && typeof value === "number") shown += ` (${humanMs(value)})`;
  if (unit === "bytes" && typeof value === "number") shown += ` (${humanBytes(value)})`;
  return `${text} Default: ${shown}.`;
}

const agentIdSchema = z.string({ error: AGENT_ID_RULE }).regex(AGENT_ID_PATTERN, { error: AGENT_ID_RULE });

const agentEntrySchema = strictObject({
  name: nonEmpty().optional().describe(doc("Display name of the agent.", undefined) + " Unset shows the id."),
  workspace: pathString()
    .optional()
    .describe(doc("The agent's persistent workspace directory; `~` expands to the home directory, relative paths resolve against the working directory.", undefined) + " Unset uses agents.defaults.workspace."),
  default: z
    .boolean()
    .optional()
    .describe(doc("Marks this agent as the default one (at most one entry may set it; agents.default takes precedence).", undefined)),
}).describe("One configured agent.");

const gatewaySchema = strictObject({
  port: integer(0, 65_535, " (0 = any free port)")
    .default(D.gateway.port)
    .describe(doc("TCP port the gateway listens on; 0 picks any free port. Env OCGW_PORT, flag --port.", D.gateway.port)),
  bind: z
    .string({ error: 'must be "loopback", "lan" or an IP address literal such as "192.168.1.10" (no brackets, no port)' })
    .refine(isValidBind, { error: 'must be "loopback", "lan" or an IP address literal such as "192.168.1.10" (no brackets, no port)' })
    .default(D.gateway.bind)
    .describe(
      doc(
        'Where to listen: "loopback" (127.0.0.1), "lan" (0.0.0.0) or an IP literal. Anything but loopback is refused with gateway.auth.mode "none". Flag --bind.',
        D.gateway.bind,
      ),
    ),
  auth: strictObject({
    mode: oneOf(AUTH_MODES)
      .default(D.gateway.auth.mode)
      .describe(
        doc(
          '"token": every client must present the gateway token on connect; "none": no credential is asked for (refused on a non-loopback bind; such clients never get operator.admin nor a method that removes anything).',
          D.gateway.auth.mode,
        ),
      ),
    token: nonEmpty()
      .optional()
      .describe(
        doc(
          `Shared secret clients send on connect (a non-empty string; \`openssl rand -base64 32\` makes a good one). Unset = a random one generated on first start into <stateDir>/gateway.token (owner-only), which the ocgw CLI reads. Env OCGW_GATEWAY_TOKEN, flag --token.`,
          D.gateway.auth.token,
        ),
      ),
    rateLimit: strictObject({
      maxAttempts: integer(1, 1_000_000)
        .default(D.gateway.auth.rateLimit.maxAttempts)
        .describe(doc("Failed connects from one client address within windowMs that lock it out (count).", D.gateway.auth.rateLimit.maxAttempts)),
      windowMs: millis(1)
        .default(D.gateway.auth.rateLimit.windowMs)
        .describe(doc("Sliding window over which failed connects are counted, in milliseconds.", D.gateway.auth.rateLimit.windowMs, "ms")),
      lockoutMs: millis(1)
        .default(D.gateway.auth.rateLimit.lockoutMs)
        .describe(doc("How long a locked-out address is refused (HTTP 429 with Retry-After), in milliseconds.", D.gateway.auth.rateLimit.lockoutMs, "ms")),
      exemptLoopback: z
        .boolean({ error: "must be true or false" })
        .default(D.gateway.auth.rateLimit.exemptLoopback)
        .describe(doc("Never lock out loopback clients; a connection that carries a browser Origin is counted (by origin) all the same.", D.gateway.auth.rateLimit.exemptLoopback)),
    })
      .prefault({})
      .describe("Throttling of failed authentication."),
  })
    .prefault({})
    .describe("Client authentication."),
  controlUi: strictObject({
    allowedOrigins: z
      .array(z.string({ error: ORIGIN_RULE }).refine(isOrigin, { error: ORIGIN_RULE }), { error: `must be an array of origins; each ${ORIGIN_RULE}` })
      .default(() => [...D.gateway.controlUi.allowedOrigins])
      .describe(doc("Browser origins allowed to open a WebSocket (a socket whose upgrade carries any other Origin header is refused with HTTP 403). Empty = no browser may connect.", D.gateway.controlUi.allowedOrigins)),
  })
    .prefault({})
    .describe("Browser clients."),
  handshakeTimeoutMs: millis(1)
    .default(D.gateway.handshakeTimeoutMs)
    .describe(doc("Milliseconds a new connection has to complete the connect handshake (also bounds the HTTP upgrade request).", D.gateway.handshakeTimeoutMs, "ms")),
  preauthMaxBytes: integer(1024, 16 * 1024 * 1024, " (bytes)")
    .default(D.gateway.preauthMaxBytes)
    .describe(doc("Largest WebSocket frame accepted before connect succeeds; a larger one is refused from its header, before it is read (close 1009).", D.gateway.preauthMaxBytes, "bytes")),
  maxConnections: integer(1, 1_000_000)
    .default(D.gateway.maxConnections)
    .describe(doc("Most sockets open at once, authenticated or not; an upgrade beyond it gets HTTP 503 with Retry-After (count).", D.gateway.maxConnections)),
  maxUnauthenticatedConnections: integer(1, 1_000_000)
    .default(D.gateway.maxUnauthenticatedConnections)
    .describe(doc("Most sockets at once that have not completed connect; an upgrade beyond it gets HTTP 503 with Retry-After (count).", D.gateway.maxUnauthenticatedConnections)),
  maxInFlightRequests: integer(1, 1_000_000)
    .default(D.gateway.maxInFlightRequests)
    .describe(doc("Requests one connection may have unanswered at once; one more is refused with TOO_MANY_REQUESTS (count).", D.gateway.maxInFlightRequests)),
  tickIntervalMs: millis(1)
    .default(D.gateway.tickIntervalMs)
    .describe(doc("Milliseconds between tick events sent to connected clients.", D.gateway.tickIntervalMs, "ms")),
  maxPayloadBytes: integer(1024, 2 ** 31 - 1, " (bytes)")
    .default(D.gateway.maxPayloadBytes)
    .describe(doc("Largest WebSocket message accepted, in bytes.", D.gateway.maxPayloadBytes, "bytes")),
  deltaWindowMs: integer(0, MAX_DELTA_WINDOW_MS, " (milliseconds; 0 = merge only the chunks that arrive together)")
    .default(D.gateway.deltaWindowMs)
    .describe(
      doc(
        "Milliseconds over which a run's reply chunks are merged into one chat/agent delta event: a run sends at most one delta per window (the first chunk at once), plus one whenever deltaMaxBytes of text are pending. 0 = merge only the chunks that arrive together.",
        D.gateway.deltaWindowMs,
        "ms",
      ),
    ),
  deltaMaxBytes: integer(1, 2 ** 31 - 1, " (bytes)")
    .default(D.gateway.deltaMaxBytes)
    .describe(doc("Bytes (UTF-8) of pending reply text that send a delta before its window ends.", D.gateway.deltaMaxBytes, "bytes")),
})
  .prefault({})
  .describe("The WebSocket listener.");

const agentsSchema = strictObject({
  defaults: strictObject({
    workspace: pathString()
      .optional()
      .describe(doc("Workspace directory for agents that set none; `~` expands, relative paths resolve against the working directory.", D.agents.defaults.workspace)),
    skipBootstrap: z
      .boolean()
      .default(D.agents.defaults.skipBootstrap)
      .describe(doc("true = do not write bootstrap files into new workspaces.", D.agents.defaults.skipBootstrap)),
  })
    .prefault({})
    .describe("Settings every agent inherits."),
  default: agentIdSchema
    .optional()
    .describe(
      doc(`Id of the default agent. Unset = the entry with default: true, else the only entry, else "${DEFAULT_AGENT_ID}".`, D.agents.default),
    ),
  entries: z
    .record(agentIdSchema, agentEntrySchema, { error: "must be an object mapping agent ids to agent settings" })
    .default(() => ({}))
    .describe(doc(`Configured agents by id. Empty = one implicit agent "${DEFAULT_AGENT_ID}".`, D.agents.entries)),
})
  .prefault({})
  .describe("Agents.");

const workspaceSchema = strictObject({
  implicit: oneOf(IMPLICIT_WORKSPACE_MODES)
    .default(D.workspace.implicit)
    .describe(
      doc(
        'Workspace given to a session that chat.send creates implicitly: "ephemeral" (a private temporary directory removed when the session ends or idles), "agent" (the agent\'s workspace), "persistent" (a kept per-session directory) or "none".',
        D.workspace.implicit,
      ),
    ),
  ephemeral: strictObject({
    root: pathString()
      .optional()
      .describe(doc("Directory that holds ephemeral workspaces. Unset = <os.tmpdir()>/openclaw-<uid>.", D.workspace.ephemeral.root)),
    idleTtlMs: millis(0, "; 0 = release when a run ends")
      .default(D.workspace.ephemeral.idleTtlMs)
      .describe(doc("Milliseconds an ephemeral workspace may sit idle before it is released; 0 releases it when a run ends.", D.workspace.ephemeral.idleTtlMs, "ms")),
    maxLeases: integer(1, 1_000_000)
      .default(D.workspace.ephemeral.maxLeases)
      .describe(doc("Most ephemeral workspaces alive at once (count).", D.workspace.ephemeral.maxLeases)),
    staleMs: millis(2000)
      .default(D.workspace.ephemeral.staleMs)
      .describe(doc("Milliseconds without a heartbeat after which another gateway instance counts as dead and its workspaces as orphans (at least 2000).", D.workspace.ephemeral.staleMs, "ms")),
  })
    .prefault({})
    .describe("Ephemeral workspaces."),
  persistent: strictObject({
    maxSessions: integer(0, 1_000_000)
      .default(D.workspace.persistent.maxSessions)
      .describe(doc('Most sessions that may own a kept per-session directory (workspace mode "persistent", which nothing ever removes); 0 = none may (count).', D.workspace.persistent.maxSessions)),
  })
    .prefault({})
    .describe("Kept per-session directories."),
  gc: strictObject({
    onStartup: z
      .boolean()
      .default(D.workspace.gc.onStartup)
      .describe(doc("Sweep orphaned ephemeral workspaces when the gateway starts.", D.workspace.gc.onStartup)),
    intervalMs: millis(0, "; 0 = no periodic sweep")
      .default(D.workspace.gc.intervalMs)
      .describe(doc("Milliseconds between orphan sweeps; 0 disables the periodic sweep.", D.workspace.gc.intervalMs, "ms")),
    retainReleasedMs: millis(0)
      .default(D.workspace.gc.retainReleasedMs)
      .describe(doc("Milliseconds a released ledger row whose directory is gone is kept as history before a collection prunes it.", D.workspace.gc.retainReleasedMs, "ms")),
  })
    .prefault({})
    .describe("The orphan collector."),
})
  .prefault({})
  .describe("Session workspaces.");

const runnerSchema = strictObject({
  kind: oneOf(RUNNER_KINDS)
    .default(D.runner.kind)
    .describe(doc('What produces replies: "echo" (repeats the message), "command" (runs runner.command.argv) or "openai" (an OpenAI-compatible chat API).', D.runner.kind)),
  timeoutMs: millis(1)
    .default(D.runner.timeoutMs)
    .describe(doc("Default run timeout in milliseconds.", D.runner.timeoutMs, "ms")),
  command: strictObject({
    argv: z
      .array(z.string({ error: "must be a string" }), { error: 'must be an array of strings such as ["my-agent", "--json"]' })
      .default(() => [...D.runner.command.argv])
      .describe(doc('Program and arguments, e.g. ["my-agent", "--json"]; required (non-empty) when runner.kind is "command".', D.runner.command.argv)),
    env: z
      .record(
        z.string().regex(/^[^=\0]+$/, { error: 'must be an environment variable name (non-empty, without "=")' }),
        z.string({ error: "must be a string" }),
        { error: "must be an object mapping variable names to string values" },
      )
      .default(() => ({}))
      .describe(doc("Extra environment variables for the command (name → value).", D.runner.command.env)),
  })
    .prefault({})
    .describe('The "command" runner.'),
  openai: strictObject({
    baseUrl: z
      .url({ protocol: /^https?$/, error: 'must be an http or https URL such as "https://api.openai.com/v1"' })
      .optional()
      .describe(doc('Base URL of the OpenAI-compatible API; required when runner.kind is "openai". Env OCGW_OPENAI_BASE_URL.', D.runner.openai.baseUrl)),
    model: nonEmpty()
      .optional()
      .describe(doc('Model name; required when runner.kind is "openai". Env OCGW_OPENAI_MODEL.', D.runner.openai.model)),
    apiKey: nonEmpty()
      .optional()
      .describe(doc("API key (secret). Unset = read from the environment variable named by apiKeyEnv.", D.runner.openai.apiKey)),
    apiKeyEnv: z
      .string({ error: 'must be an environment variable name (letters, digits and "_", not starting with a digit)' })
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: 'must be an environment variable name (letters, digits and "_", not starting with a digit)' })
      .default(D.runner.openai.apiKeyEnv)
      .describe(doc("Environment variable that holds the API key.", D.runner.openai.apiKeyEnv)),
  })
    .prefault({})
    .describe('The "openai" runner.'),
})
  .prefault({})
  .describe("The runner that produces replies.");

/**
 * The one schema of the gateway configuration (zod 4, strict at every level: unknown keys are
 * errors). Every key carries a `.describe()` text stating its unit and default, so reference
 * documentation can be generated from it (`z.toJSONSchema(configSchema, { io: "input" })`).
 *
 * Parsing applies the defaults from {@link CONFIG_DEFAULTS} and checks the cross-field rules
 * (runner settings the chosen kind needs, the default agent); it does not expand `~`, resolve
 * relative paths or compute the default agent: `resolveConfig` does.
 */
export const configSchema = strictObject({
  stateDir: pathString()
    .default(D.stateDir)
    .describe(doc("State directory (database, locks); `~` expands to the home directory, relative paths resolve against the working directory. Env OCGW_STATE_DIR, flag --state-dir.", D.stateDir)),
  gateway: gatewaySchema,
  agents: agentsSchema,
  session: strictObject({
    mainKey: nonEmpty()
      .default(D.session.mainKey)
      .describe(doc("Name of each agent's main session (agent:<id>:<mainKey>).", D.session.mainKey)),
    maxQueuedRuns: integer(1, 100_000)
      .default(D.session.maxQueuedRuns)
      .describe(doc("Most runs waiting behind a session's running one (count); a message beyond that is refused with RUN_QUEUE_FULL.", D.session.maxQueuedRuns)),
  })
    .prefault({})
    .describe("Sessions."),
  workspace: workspaceSchema,
  runner: runnerSchema,
})
  .superRefine((value, ctx) => {
    checkCrossFieldRules(value, (path, message) => {
      ctx.addIssue({ code: "custom", path, message, params: { crossField: true } });
    });
  }, { when: () => true }) // also when other keys failed: report every problem at once
  .describe("ocgw gateway configuration (JSON5).");

/** The configuration after parsing: every default applied, paths not yet resolved. */
export type GatewayConfig = z.output<typeof configSchema>;
/** What a config file or `resolveConfig` accepts: every key optional. */
export type GatewayConfigInput = z.input<typeof configSchema>;

// Compile-time proof that CONFIG_DEFAULTS has the shape the schema outputs.
const _defaultsMatchSchema: DeepReadonly<GatewayConfig> = CONFIG_DEFAULTS;

/**
 * The rules no single key can check. Runs even when other keys failed, so `value` is only
 * partly valid: every access is guarded.
 */
function checkCrossFieldRules(value: unknown, report: (path: (string | number)[], message: string) => void): void {
  if (!isRecord(value)) return;

  const runner = value["runner"];
  if (isRecord(runner)) {
    const command = runner["command"];
    const argv = isRecord(command) ? command["argv"] : undefined;
    if (runner["kind"] === "command" && Array.isArray(argv) && argv.length === 0) {
      report(["runner", "command", "argv"], 'must list the program and its arguments when runner.kind is "command", e.g. ["my-agent", "--json"]');
    }
    if (Array.isArray(argv) && argv[0] === "") {
      report(["runner", "command", "argv", 0], "must name the program to run (not an empty string)");
    }
    const openai = runner["openai"];
    if (runner["kind"] === "openai" && isRecord(openai)) {
      if (openai["baseUrl"] === undefined) {
        report(["runner", "openai", "baseUrl"], 'is required when runner.kind is "openai": set it to the API\'s base URL, e.g. "https://api.openai.com/v1", or set OCGW_OPENAI_BASE_URL');
      }
      if (openai["model"] === undefined) {
        report(["runner", "openai", "model"], 'is required when runner.kind is "openai": set it to a model name, or set OCGW_OPENAI_MODEL');
      }
    }
  }

  const gateway = value["gateway"];
  const auth = isRecord(gateway) ? gateway["auth"] : undefined;
  if (isRecord(auth) && auth["mode"] === "none" && auth["token"] !== undefined) {
    report(["gateway", "auth", "token"], 'is set but gateway.auth.mode is "none", which asks no client for it: remove the token, or set gateway.auth.mode to "token"');
  }

  const agents = value["agents"];
  const entries = isRecord(agents) ? agents["entries"] : undefined;
  if (!isRecord(agents) || !isRecord(entries)) return;
  const ids = Object.keys(entries);
  const marked = ids.filter((id) => {
    const entry = entries[id];
    return isRecord(entry) && entry["default"] === true;
  });
  if (marked.length > 1) {
    report(["agents", "entries"], `mark ${marked.length} agents default: true (${marked.map((id) => `"${id}"`).join(", ")}); keep it on one of them, or set agents.default`);
  }
  const chosen = agents["default"];
  const known = ids.length > 0 ? ids : [DEFAULT_AGENT_ID];
  if (typeof chosen === "string" && AGENT_ID_PATTERN.test(chosen) && !known.includes(chosen)) {
    const fix = ids.length > 0 ? `use one of ${known.map((id) => `"${id}"`).join(", ")}` : `with no agents.entries the only agent is "${DEFAULT_AGENT_ID}"`;
    report(["agents", "default"], `names "${chosen}", which is not a configured agent: ${fix}, or add agents.entries.${chosen}`);
  }
  if (chosen === undefined && marked.length === 0 && ids.length > 1 && !ids.includes(DEFAULT_AGENT_ID)) {
    report(
      ["agents", "default"],
      `is required when several agents are configured, none is "${DEFAULT_AGENT_ID}" and none has default: true: set it to one of ${ids.map((id) => `"${id}"`).join(", ")}`,
    );
  }
}
