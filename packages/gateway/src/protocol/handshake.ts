/**
 * The handshake. {@link evaluateConnect} (pure) judges a `connect` request: params, protocol
 * range, shared-secret auth and granted scopes. {@link createHandshake} handles a peer's first
 * frame: it answers hello-ok and opens the peer, or answers a coded error and closes the socket
 * with the matching close code. The challenge, the pre-auth size limit and the handshake timeout
 * belong to the connection (connection.ts).
 */
import { createHash, randomUUID, timingSafeEqual } from "node:crypto";
import { GatewayError } from "../errors.ts";
import type { MethodTable } from "./dispatch.ts";
import { PROTOCOL_VERSION, connectParamsSchema, formatIssues, parseJson, requestFrameSchema } from "./frames.ts";
import type { ProtocolLimits } from "./limits.ts";
import { clearHandshakeTimer } from "./peer.ts";
import type { Connection, Peer, PeerRegistry } from "./peer.ts";
import { setFrameLimit } from "./frame-limit.ts";
import { type AuthRateLimiter, rateLimitKey } from "./rate-limit.ts";
import { DEFAULT_SCOPES } from "./scopes.ts";
import type { Sender } from "./sender.ts";

/** WebSocket close codes the gateway uses (upstream §1.4). */
export const CLOSE_NORMAL = 1000;
export const CLOSE_PROTOCOL_ERROR = 1002;
export const CLOSE_POLICY_VIOLATION = 1008;
export const CLOSE_TOO_BIG = 1009;
export const CLOSE_INTERNAL_ERROR = 1011;
export const CLOSE_SERVICE_RESTART = 1012;

/** How clients authenticate: with the shared token, or (loopback only, chosen explicitly) not at all. */
export type ProtocolAuth = { readonly mode: "token"; readonly token: string } | { readonly mode: "none" };

/** The most a connection without a credential gets: never operator.admin. */
export const NO_CREDENTIAL_SCOPES: ReadonlySet<string> = new Set(["operator.read", "operator.write"]);

export interface AcceptedConnect {
  kind: "accepted";
  credential: "token" | "none";
  scopes: Set<string>;
  client: { id: string; mode: string; version?: string };
  caps: Set<string>;
}

export interface RejectedConnect {
  kind: "rejected";
  error: GatewayError;
  closeCode: number;
}

export const TOKEN_MISMATCH_MESSAGE = "unauthorized: gateway token mismatch (use this gateway's gateway.auth.token or pair the device)";
export const TOKEN_MISSING_MESSAGE = "unauthorized: gateway token missing (set gateway.remote.token to match gateway.auth.token)";

function sha256(text: string): Buffer {
  return createHash("sha256").update(text, "utf8").digest();
}

/** Constant-time comparison of two secrets of any length (both are hashed first). */
export function secretsEqual(given: string, expected: string): boolean {
  return timingSafeEqual(sha256(given), sha256(expected));
}

/** A close reason may hold at most 123 bytes of UTF-8; cut on a character boundary. */
export function truncateCloseReason(reason: string): string {
  if (Buffer.byteLength(reason, "utf8") <= 123) return reason;
  let out = "";
  let bytes = 0;
  for (const char of reason) {
    const size = Buffer.byteLength(char, "utf8");
    if (bytes + size > 123) break;
    out += char;
    bytes += size;
  }
  return out;
}

function reject(error: GatewayError, closeCode: number): RejectedConnect {
  return { kind: "rejected", error, closeCode };
}

/** AUTH_FAILED unless one of the secrets offered in `auth` is `token` (compared in constant time). */
function checkToken(auth: { token?: string | undefined; password?: string | undefined } | undefined, token: string): RejectedConnect | undefined {
  const offered = [auth?.token, auth?.password].filter((value): value is string => typeof value === "string" && value !== "");
  if (offered.length === 0) {
    return reject(
      new GatewayError("AUTH_FAILED", TOKEN_MISSING_MESSAGE, {
        fix: null,
        details: { code: "AUTH_TOKEN_MISSING", authReason: "token_missing", canRetryWithDeviceToken: false, recommendedNextStep: "update_auth_configuration" },
      }),
      CLOSE_POLICY_VIOLATION,
    );
  }
  // Compare every offered secret (no early exit) so timing does not tell which field matched.
  const matches = offered.map((secret) => secretsEqual(secret, token));
  if (matches.includes(true)) return undefined;
  return reject(
    new GatewayError("AUTH_FAILED", TOKEN_MISMATCH_MESSAGE, {
      fix: null,
      details: { code: "AUTH_TOKEN_MISMATCH", authReason: "token_mismatch", canRetryWithDeviceToken: false, recommendedNextStep: "update_auth_credentials" },
    }),
    CLOSE_POLICY_VIOLATION,
  );
}

/**
 * Checks a connect request's params against the protocol version and the auth mode. With the
 * token the client gets the scopes it asks for; without a credential at most
 * {@link NO_CREDENTIAL_SCOPES}.
 */
export function evaluateConnect(rawParams: unknown, auth: ProtocolAuth): AcceptedConnect | RejectedConnect {
  const parsed = connectParamsSchema.safeParse(rawParams);
  if (!parsed.success) {
    const text = formatIssues(parsed.error.issues, rawParams);
    return reject(new GatewayError("INVALID_HANDSHAKE", `invalid connect params: ${text}`, { fix: null }), CLOSE_POLICY_VIOLATION);
  }
  const params = parsed.data;

  if (params.minProtocol > PROTOCOL_VERSION || params.maxProtocol < PROTOCOL_VERSION) {
    return reject(
      new GatewayError("PROTOCOL_MISMATCH", "protocol mismatch", {
        fix: null,
        details: { clientMinProtocol: params.minProtocol, clientMaxProtocol: params.maxProtocol, expectedProtocol: PROTOCOL_VERSION },
      }),
      CLOSE_PROTOCOL_ERROR,
    );
  }

  if (auth.mode === "token") {
    const refused = checkToken(params.auth, auth.token);
    if (refused !== undefined) return refused;
  }

  const client: AcceptedConnect["client"] = { id: params.client.id, mode: params.client.mode };
  if (params.client.version !== undefined) client.version = params.client.version;
  const requested = params.scopes ?? DEFAULT_SCOPES;
  return {
    kind: "accepted",
    credential: auth.mode,
    scopes: new Set(auth.mode === "token" ? requested : requested.filter((scope) => NO_CREDENTIAL_SCOPES.has(scope))),
    client,
    caps: new Set(params.caps ?? []),
  };
}

export interface HandshakeOptions {
  auth: ProtocolAuth;
  /** Failed connects per address (or browser origin). */
  limiter: AuthRateLimiter;
  serverVersion: string;
  /** Its names are advertised in hello-ok features.methods. */
  methods: MethodTable;
  /** Advertised in hello-ok features.events. */
  events: readonly string[];
  /** Merged into hello-ok.snapshot over the defaults (presence [], health, stateVersion, uptimeMs). */
  snapshot(): Record<string, unknown>;
  limits: Required<ProtocolLimits>;
  /** When the server started (ms since the epoch), for the default snapshot uptimeMs. */
  startedAt: number;
  peers: PeerRegistry;
  sender: Sender;
  log: (line: string) => void;
}

/** The hello-ok payload for a connection that was just accepted; throws when `snapshot()` does. */
function buildHelloOk(conn: Connection, options: HandshakeOptions): Record<string, unknown> {
  const { limits } = options;
  const now = Date.now();
  return {
    type: "hello-ok",
    protocol: PROTOCOL_VERSION,
    server: { version: options.serverVersion, connId: conn.connId },
    features: { methods: Object.keys(options.methods), events: [...options.events] },
    snapshot: {
      presence: [],
      health: { ok: true, ts: now },
      stateVersion: { presence: 0, health: 0 },
      uptimeMs: now - options.startedAt,
      ...options.snapshot(),
    },
    auth: { role: "operator", scopes: [...conn.scopes], method: conn.credential },
    policy: { maxPayload: limits.maxPayloadBytes, maxBufferedBytes: limits.maxBufferedBytes, tickIntervalMs: limits.tickIntervalMs },
  };
}

function refuse(options: HandshakeOptions, peer: Peer, id: string, error: unknown, closeCode: number, reason: string): void {
  options.sender.respondError(peer, id, error);
  options.sender.close(peer, closeCode, reason);
}

/**
 * {@link evaluateConnect}, throttled: a peer whose address (or origin) is locked out gets
 * AUTH_RATE_LIMITED whatever it sends; a failed token counts against it; a success clears it.
 */
function judgeConnect(options: HandshakeOptions, peer: Peer, params: unknown): AcceptedConnect | RejectedConnect {
  const key = rateLimitKey(peer.address, peer.origin);
  const lockedMs = options.limiter.lockedFor(key);
  if (lockedMs > 0) return rateLimited(lockedMs);
  const verdict = evaluateConnect(params, options.auth);
  if (verdict.kind === "accepted") options.limiter.succeed(key);
  else if (verdict.error.code === "AUTH_FAILED") options.limiter.fail(key);
  return verdict;
}

function rateLimited(retryAfterMs: number): RejectedConnect {
  const error = new GatewayError("AUTH_RATE_LIMITED", `unauthorized: too many failed authentication attempts (retry later)`, {
    fix: null,
    retryable: true,
    details: { code: "AUTH_RATE_LIMITED", authReason: "rate_limited", retryAfterMs, recommendedNextStep: "wait_then_retry" },
  });
  return reject(error, CLOSE_POLICY_VIOLATION);
}

/**
 * A peer's first frame. Not a request: close 1008. Not `connect`: INVALID_HANDSHAKE, close 1008.
 * Rejected by {@link evaluateConnect}: its error and close code. A snapshot that throws: its
 * error, close 1011. Otherwise the peer opens and gets hello-ok.
 */
function handleHandshakeFrame(options: HandshakeOptions, peer: Peer, text: string): void {
  const { sender, log } = options;
  const frame = requestFrameSchema.safeParse(parseJson(text));
  if (!frame.success) {
    log(`gateway ws ${peer.remote}: first frame is not a request; closing`);
    sender.close(peer, CLOSE_POLICY_VIOLATION, "invalid handshake");
    return;
  }
  const { id, method } = frame.data;
  if (method !== "connect") {
    const error = new GatewayError("INVALID_HANDSHAKE", "invalid handshake: first request must be connect", { fix: null });
    refuse(options, peer, id, error, CLOSE_POLICY_VIOLATION, error.message);
    return;
  }
  const verdict = judgeConnect(options, peer, frame.data.params);
  if (verdict.kind === "rejected") {
    log(`gateway ws ${peer.remote}: connect rejected: ${verdict.error.message}`);
    refuse(options, peer, id, verdict.error, verdict.closeCode, verdict.error.message);
    return;
  }
  const { scopes, client, caps, credential } = verdict;
  const conn: Connection = { connId: randomUUID(), scopes, client, caps, credential, data: new Map() };
  let hello: Record<string, unknown>;
  try {
    hello = buildHelloOk(conn, options);
  } catch (error) {
    log(`gateway hello-ok snapshot failed: ${(error as Error).message}`);
    refuse(options, peer, id, error, CLOSE_INTERNAL_ERROR, "internal error");
    return;
  }
  clearHandshakeTimer(peer);
  setFrameLimit(peer.ws, options.limits.maxPayloadBytes);
  options.peers.opened(peer, conn);
  log(`gateway ws connected conn=${conn.connId} client=${conn.client.id}/${conn.client.mode} scopes=${[...conn.scopes].join(",")}`);
  sender.respond(peer, id, true, hello);
}

/** The handler of a peer's first frame (see {@link handleHandshakeFrame} for the outcomes). */
export function createHandshake(options: HandshakeOptions): (peer: Peer, text: string) => void {
  return (peer, text) => handleHandshakeFrame(options, peer, text);
}
