/**
 * Every error @ocgw/gateway throws carries one of these stable codes, a message that says how to
 * fix it, and the protocol error code it maps to on the wire (one place: {@link toWireError}).
 * `docs/errors.md` lists the same codes; a test keeps the two in step.
 */
export type WireErrorCode = "INVALID_REQUEST" | "FORBIDDEN" | "UNAVAILABLE" | "NOT_PAIRED";

export const gatewayErrorCatalog = {
  CONFIG_INVALID: { wire: "INVALID_REQUEST", meaning: "The configuration (file, environment or flags) does not match the schema.", fix: "Correct each listed key at its path; docs/configuration.md lists every key, its type and default." },
  CONFIG_UNREADABLE: { wire: "UNAVAILABLE", meaning: "The configuration file could not be read or is not valid JSON5.", fix: "Check the path given by --config or OCGW_CONFIG, and the JSON5 syntax at the line named." },
  STORE_UNAVAILABLE: { wire: "UNAVAILABLE", meaning: "The SQLite store could not be opened or migrated, or (as a `chat` error event's `errorCode`) an admitted run could not be recorded and did not run.", fix: "Check that the state directory is writable and that no other program holds the database." },
  STORE_TOO_NEW: { wire: "UNAVAILABLE", meaning: "The database was written by a newer ocgw (its schema version is above what this build knows).", fix: "Run the newer ocgw, or point OCGW_STATE_DIR at another state directory." },
  RUNNER_CONFIG: { wire: "INVALID_REQUEST", meaning: "The selected runner is missing settings it needs (a command, a base URL or a model).", fix: "Set the runner block in the config file as docs/configuration.md shows." },
  RUNNER_FAILED: { wire: "UNAVAILABLE", meaning: "The runner failed while producing a reply (non-zero exit, HTTP error, broken stream).", fix: "Read the error message; check the command or the model endpoint, then retry." },
  RUNNER_TIMEOUT: { wire: "UNAVAILABLE", meaning: "The run did not finish within its timeout and was stopped.", fix: "Raise timeoutMs (chat.send) or timeout (agent, in seconds), or make the runner faster." },
  RUNNER_ABORTED: { wire: "UNAVAILABLE", meaning: "The run was aborted (chat.abort, session deleted or reset, shutdown).", fix: "Nothing is needed; send the message again to start a new run." },
  INVALID_PARAMS: { wire: "INVALID_REQUEST", meaning: "A method's params do not match its schema.", fix: "Send params as docs/protocol.md describes for the method; the message names the offending field." },
  UNKNOWN_METHOD: { wire: "INVALID_REQUEST", meaning: "The method is not one this gateway implements.", fix: "Use a method listed in hello-ok features.methods." },
  MISSING_SCOPE: { wire: "FORBIDDEN", meaning: "The connection lacks the scope the method needs.", fix: "Connect with the scope named in the message (operator.read, operator.write or operator.admin)." },
  AUTH_FAILED: { wire: "INVALID_REQUEST", meaning: "The connect request carried no token or the wrong one.", fix: "Pass this gateway's token: its gateway.auth.token (OCGW_GATEWAY_TOKEN), else the one generated into <stateDir>/gateway.token." },
  AUTH_RATE_LIMITED: { wire: "INVALID_REQUEST", meaning: "Too many failed connects came from this client address (or browser origin) within gateway.auth.rateLimit.windowMs; it is locked out for lockoutMs (an upgrade gets HTTP 429 with Retry-After).", fix: "Wait for the time in Retry-After (retryAfterMs), then connect with the right token." },
  AUTH_TOKEN_FILE: { wire: "UNAVAILABLE", meaning: "The gateway token file (<stateDir>/gateway.token) is not a plain file of this user readable only by it, or does not hold one token; its secret may be known to others.", fix: "Delete the file to have a new token generated at the next start (clients then need the new one), or chmod 600 it if you are sure no one else read it." },
  CREDENTIAL_REQUIRED: { wire: "FORBIDDEN", meaning: "The method removes data (sessions.delete, sessions.reset, workspaces.gc) and the connection presented no credential (gateway.auth.mode is \"none\").", fix: "Set gateway.auth.mode to \"token\" (the default) and connect with the gateway token." },
  ORIGIN_NOT_ALLOWED: { wire: "FORBIDDEN", meaning: "A WebSocket upgrade carried a browser Origin header that is not in gateway.controlUi.allowedOrigins; it was refused with HTTP 403.", fix: "Add the exact origin (scheme://host[:port]) to gateway.controlUi.allowedOrigins if that page is yours; other programs send no Origin header." },
  TOO_MANY_CONNECTIONS: { wire: "UNAVAILABLE", meaning: "gateway.maxConnections sockets (or gateway.maxUnauthenticatedConnections that have not completed connect) are already open; the upgrade was refused with HTTP 503 and Retry-After.", fix: "Retry after the time in Retry-After; close idle clients, or raise the limit." },
  TOO_MANY_REQUESTS: { wire: "UNAVAILABLE", meaning: "The connection already has gateway.maxInFlightRequests requests unanswered; this one was not started.", fix: "Wait for answers before sending more on one connection, or raise gateway.maxInFlightRequests." },
  PROTOCOL_MISMATCH: { wire: "INVALID_REQUEST", meaning: "The client's protocol range does not include version 4.", fix: "Use a client that speaks OpenClaw gateway protocol 4." },
  INVALID_HANDSHAKE: { wire: "INVALID_REQUEST", meaning: "The first request on a connection was not connect, or connect params were malformed.", fix: "Send connect as the first request, after the connect.challenge event." },
  UNKNOWN_AGENT: { wire: "INVALID_REQUEST", meaning: "The session key or agentId names an agent that is not configured.", fix: "Use a configured agent id (agents.list), or add the agent to agents.entries." },
  INVALID_SESSION_KEY: { wire: "INVALID_REQUEST", meaning: "The session key is malformed (empty part, over 512 characters).", fix: "Send a key like agent:<agentId>:<name> or a bare name." },
  SESSION_NOT_FOUND: { wire: "INVALID_REQUEST", meaning: "No session exists for the key.", fix: "Create it with sessions.create or chat.send first, or check the key with sessions.list." },
  IDEMPOTENCY_CONFLICT: { wire: "INVALID_REQUEST", meaning: "An idempotencyKey was reused for a different message.", fix: "Use a fresh idempotencyKey for each new message." },
  RUN_NOT_FOUND: { wire: "INVALID_REQUEST", meaning: "No run is known under this runId.", fix: "Pass the runId (idempotencyKey) of a run started on this gateway in the last 24 hours." },
  WORKSPACE_UNAVAILABLE: { wire: "UNAVAILABLE", meaning: "A workspace could not be provided for the session (see the cause).", fix: "Check the ephemeral root and free space (ocgw doctor), or send workspace: false." },
  RUN_QUEUE_FULL: { wire: "UNAVAILABLE", meaning: "The session already has session.maxQueuedRuns runs waiting behind the one running; the message was not accepted.", fix: "Wait for the session's runs to end (agent.wait) or abort them (chat.abort), then send again; or raise session.maxQueuedRuns." },
  WORKSPACE_LIMIT: { wire: "UNAVAILABLE", meaning: "The session asked for a kept per-session directory (workspace mode \"persistent\") and workspace.persistent.maxSessions sessions already have one.", fix: "Use an ephemeral workspace (the default) or workspace: false, remove kept directories you no longer need, or raise workspace.persistent.maxSessions." },
  GATEWAY_CLOSING: { wire: "UNAVAILABLE", meaning: "The gateway is shutting down and takes no new work.", fix: "Reconnect once it is back." },
  INSECURE_BIND: { wire: "INVALID_REQUEST", meaning: "A non-loopback bind was requested with gateway.auth.mode \"none\" (no credential).", fix: "Set gateway.auth.mode to \"token\" (the default), or bind loopback." },
  GATEWAY_UNREACHABLE: { wire: "UNAVAILABLE", meaning: "The client could not reach the gateway (connection refused, timed out, or closed while a request was pending).", fix: "Start the gateway (ocgw gateway run) or pass its address with --url (default ws://127.0.0.1:18789)." },
  HANDSHAKE_FAILED: { wire: "INVALID_REQUEST", meaning: "The gateway did not complete the connect handshake (wrong or missing token, protocol mismatch, no challenge).", fix: "Pass the gateway's token with --token (the local gateway's is found by itself: OCGW_GATEWAY_TOKEN, gateway.auth.token, <stateDir>/gateway.token), and check that --url points at an OpenClaw protocol 4 gateway." },
  RPC_FAILED: { wire: "UNAVAILABLE", meaning: "The gateway answered a request with an error; details.remote holds the error it sent.", fix: "Read the gateway's message and code in details.remote; docs/errors.md explains each code." },
  REQUEST_TIMEOUT: { wire: "UNAVAILABLE", meaning: "The gateway did not answer a request within the client's timeout.", fix: "Raise the timeout (--timeout), or check the gateway's log for a stuck method." },
  LEGACY_UNREADABLE: { wire: "INVALID_REQUEST", meaning: "The OpenClaw state directory to scan does not exist or is not a directory, or its config (openclaw.json or an $include) cannot be read or is not valid JSON5.", fix: "Pass the OpenClaw state directory (e.g. ~/.openclaw) and fix the file at the line named; nothing was removed." },
  LEGACY_UNSUPPORTED: { wire: "INVALID_REQUEST", meaning: "OpenClaw's config has a shape the legacy reclaim does not understand (an unknown sandbox mode, a custom session.store, a value of the wrong type, an unresolved ${VAR} in a path), so what it owns cannot be proven.", fix: "Check the key named in the message against OpenClaw's config reference, or run `openclaw doctor --fix`; nothing was removed." },
  LEGACY_GATEWAY_RUNNING: { wire: "UNAVAILABLE", meaning: "An OpenClaw gateway is running on (writing to) the state directory, so what it owns is changing under the scan.", fix: "Stop the OpenClaw gateway (openclaw gateway stop) and run the command again, or pass --force to act anyway; nothing was removed." },
} as const satisfies Record<string, { wire: WireErrorCode; meaning: string; fix: string }>;

export type GatewayErrorCode = keyof typeof gatewayErrorCatalog;

export interface GatewayErrorOptions {
  cause?: unknown;
  /** Extra fields for the wire error's `details` (e.g. `{ reason: "chat-request-conflict" }`). */
  details?: Record<string, unknown>;
  /** Replaces the catalogue's fix sentence; `null` leaves the message exactly as given (upstream wording). */
  fix?: string | null;
  retryable?: boolean;
}

export class GatewayError extends Error {
  override readonly name = "GatewayError";
  readonly code: GatewayErrorCode;
  /** The message without the fix sentence: what went wrong, for places that show only that (chat error events). */
  readonly detail: string;
  readonly details: Record<string, unknown> | undefined;
  readonly retryable: boolean | undefined;

  constructor(code: GatewayErrorCode, detail: string, options: GatewayErrorOptions = {}) {
    const fix = options.fix === undefined ? gatewayErrorCatalog[code].fix : options.fix;
    super(fix === null ? detail : `${detail}. ${fix}`, options.cause === undefined ? undefined : { cause: options.cause });
    this.code = code;
    this.detail = detail;
    this.details = options.details;
    this.retryable = options.retryable;
  }
}

/** The protocol's ErrorShape. */
export interface WireError {
  code: string;
  message: string;
  details?: unknown;
  retryable?: boolean;
  retryAfterMs?: number;
}

/** The one mapping from thrown errors to the wire. Unknown errors become UNAVAILABLE without leaking internals. */
export function toWireError(error: unknown): WireError {
  if (error instanceof GatewayError) {
    const wire: WireError = { code: gatewayErrorCatalog[error.code].wire, message: error.message };
    wire.details = { code: error.code, ...error.details };
    if (error.retryable !== undefined) wire.retryable = error.retryable;
    return wire;
  }
  const code = error instanceof Error ? (error as Error & { code?: unknown }).code : undefined;
  if (error instanceof Error && typeof code === "string" && code.startsWith("WS_")) {
    // @ocgw/workspace errors already say how to fix them.
    return { code: "UNAVAILABLE", message: error.message, details: { code } };
  }
  return { code: "UNAVAILABLE", message: "internal error", retryable: true };
}
