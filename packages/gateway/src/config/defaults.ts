/**
 * Every default of the gateway configuration, in one place. The schema (`schema.ts`) reads its
 * `.default()` values from here and its `.describe()` texts quote them, so the two cannot drift;
 * a test checks that parsing `{}` yields exactly these values.
 *
 * Keys whose default is "unset" are listed with `undefined` so that every key appears here once.
 */
export const CONFIG_DEFAULTS = deepFreeze({
  /** Where the gateway keeps its database and state. `~` expands to the home directory; resolved to an absolute path. */
  stateDir: "~/.ocgw",
  gateway: {
    port: 18789, // TCP port; 0 = any free port
    bind: "loopback", // "loopback" = 127.0.0.1, "lan" = 0.0.0.0, or an IP literal
    auth: {
      mode: "token", // "token": clients must present the token; "none": no credential (loopback only)
      token: undefined, // shared secret; unset = generated once into <stateDir>/gateway.token (0600)
      rateLimit: {
        maxAttempts: 10, // failed connects per client address within windowMs before it is locked out
        windowMs: 60_000, // 1 min sliding window
        lockoutMs: 300_000, // 5 min lockout
        exemptLoopback: true, // loopback clients without an Origin header are never locked out
      },
    },
    controlUi: {
      allowedOrigins: [], // browser origins (scheme://host[:port]) allowed to open a socket; empty = none
    },
    handshakeTimeoutMs: 15_000, // 15 s to finish connect after the socket opens
    preauthMaxBytes: 64 * 1024, // 64 KiB: largest frame before authentication, refused while reading
    maxConnections: 128, // open sockets at once, authenticated or not
    maxUnauthenticatedConnections: 16, // sockets at once that have not completed connect
    maxInFlightRequests: 1024, // requests one connection may have unanswered at once (a burst of pipelined chat.send is legitimate)
    tickIntervalMs: 30_000, // 30 s between tick events
    maxPayloadBytes: 25 * 1024 * 1024, // 25 MiB per WebSocket frame
    deltaWindowMs: 100, // 100 ms: at most one chat/agent delta per run per window
    deltaMaxBytes: 16 * 1024, // 16 KiB of pending reply text (UTF-8) sends a delta before its window ends
  },
  agents: {
    defaults: {
      workspace: undefined, // path; unset = the workspace layer's own default
      skipBootstrap: false, // true = do not write bootstrap files into new workspaces
    },
    default: undefined, // agent id; unset = the entry with default: true, else the only entry, else "main"
    entries: {}, // agent id → { name?, workspace?, default? }; empty = one implicit agent "main"
  },
  session: {
    mainKey: "main", // the session name a bare `main` key maps to
    maxQueuedRuns: 100, // runs waiting behind a session's running one (count); more are refused with RUN_QUEUE_FULL
  },
  workspace: {
    implicit: "ephemeral", // what a session created implicitly by chat.send gets
    ephemeral: {
      root: undefined, // path; unset = <os.tmpdir()>/openclaw-<uid>, resolved by the workspace layer
      idleTtlMs: 15 * 60_000, // 15 min; 0 = release when a run ends
      maxLeases: 10_000, // live ephemeral workspaces per gateway
      staleMs: 60_000, // 1 min without a heartbeat = the owning instance is dead
    },
    persistent: {
      maxSessions: 1_000, // sessions that may own a kept per-session directory (mode "persistent"); never removed, so bounded
    },
    gc: {
      onStartup: true, // sweep orphaned ephemeral workspaces when the gateway starts
      intervalMs: 5 * 60_000, // 5 min between sweeps; 0 = no periodic sweep
      retainReleasedMs: 24 * 60 * 60_000, // 24 h: released ledger rows that left nothing behind are pruned after this
    },
  },
  runner: {
    kind: "echo", // "echo" | "command" | "openai"
    timeoutMs: 10 * 60_000, // 10 min default run timeout
    command: {
      argv: [], // program and arguments; required (non-empty) when kind is "command"
      env: {}, // extra environment variables for the command
    },
    openai: {
      baseUrl: undefined, // URL; required when kind is "openai"
      model: undefined, // model name; required when kind is "openai"
      apiKey: undefined, // secret; unset = read from the variable named by apiKeyEnv
      apiKeyEnv: "OPENAI_API_KEY", // environment variable that holds the API key
    },
  },
} as const);

/** The id of the implicit agent when `agents.entries` is empty, and the last-resort default agent. */
export const DEFAULT_AGENT_ID = "main";

/** The config file read when neither `--config` nor `OCGW_CONFIG` names one (`~` = the home directory). Missing is fine. */
export const DEFAULT_CONFIG_FILE = "~/.ocgw/ocgw.json";

/** Recursively freezes plain objects and arrays; returns its argument typed as deeply read-only. */
export function deepFreeze<T>(value: T): DeepReadonly<T> {
  if (typeof value === "object" && value !== null) {
    Object.freeze(value);
    for (const key of Object.keys(value)) deepFreeze((value as Record<string, unknown>)[key]);
  }
  return value as DeepReadonly<T>;
}

/** `T` with every property and array read-only, at every depth. */
export type DeepReadonly<T> = T extends (...args: never[]) => unknown
  ? T
  : T extends readonly (infer E)[]
    ? readonly DeepReadonly<E>[]
    : T extends object
      ? { readonly [K in keyof T]: DeepReadonly<T[K]> }
      : T;
