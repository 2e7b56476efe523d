/**
 * Who may open a socket at all, decided on the HTTP upgrade request before any WebSocket state
 * exists: a browser origin not in the allowlist is refused (403), an address or origin locked out
 * for failed auth is refused (429), and past the connection caps every upgrade is refused (503).
 * Each refusal carries the protocol's error shape as a JSON body, and `Retry-After` where waiting
 * helps.
 */
import type { IncomingMessage } from "node:http";
import { GatewayError, type GatewayErrorCode, toWireError } from "../errors.ts";
import type { ProtocolLimits } from "./limits.ts";
import type { PeerRegistry } from "./peer.ts";
import { type AuthRateLimiter, rateLimitKey } from "./rate-limit.ts";

/** Seconds a client is told to wait after a refusal for the connection caps. */
export const CAPACITY_RETRY_AFTER_S = 5;

export interface AdmissionDeps {
  /** Exact origins (`scheme://host[:port]`) whose pages may connect. */
  allowedOrigins: ReadonlySet<string>;
  limits: Required<ProtocolLimits>;
  peers: PeerRegistry;
  limiter: AuthRateLimiter;
  log: (line: string) => void;
}

export interface Refusal {
  readonly status: number;
  /** What was refused and why, for the log. */
  readonly detail: string;
  readonly body: string;
  readonly headers: Record<string, string>;
}

/** The remote address and (if a browser sent one) origin of an upgrade request. */
export function requestIdentity(request: IncomingMessage): { address: string; origin: string | undefined } {
  const origin = request.headers.origin;
  return { address: request.socket.remoteAddress ?? "unknown", origin: typeof origin === "string" ? origin : undefined };
}

function refusal(status: number, code: GatewayErrorCode, detail: string, retryAfterMs?: number): Refusal {
  const error = new GatewayError(code, detail, retryAfterMs === undefined ? {} : { retryable: true });
  const wire = { ...toWireError(error), ...(retryAfterMs === undefined ? {} : { retryAfterMs }) };
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (retryAfterMs !== undefined) headers["Retry-After"] = String(Math.max(1, Math.ceil(retryAfterMs / 1000)));
  return { status, detail, body: JSON.stringify({ ok: false, error: wire }), headers };
}

function capacityRefusal(deps: AdmissionDeps): Refusal | undefined {
  const { limits, peers } = deps;
  const retryMs = CAPACITY_RETRY_AFTER_S * 1000;
  if (peers.all.size >= limits.maxConnections) {
    return refusal(503, "TOO_MANY_CONNECTIONS", `${peers.all.size} sockets are open (gateway.maxConnections is ${limits.maxConnections})`, retryMs);
  }
  let pending = 0;
  for (const peer of peers.all) if (peer.phase === "handshake") pending += 1;
  if (pending >= limits.maxUnauthenticatedConnections) {
    return refusal(503, "TOO_MANY_CONNECTIONS", `${pending} sockets have not completed connect (gateway.maxUnauthenticatedConnections is ${limits.maxUnauthenticatedConnections})`, retryMs);
  }
  return undefined;
}

/** Undefined when the upgrade may proceed; otherwise the HTTP refusal to send. */
export function admit(request: IncomingMessage, deps: AdmissionDeps): Refusal | undefined {
  const { address, origin } = requestIdentity(request);
  if (origin !== undefined && !deps.allowedOrigins.has(origin)) {
    deps.log(`gateway ws upgrade from ${address} refused: origin ${JSON.stringify(origin)} is not in gateway.controlUi.allowedOrigins`);
    return refusal(403, "ORIGIN_NOT_ALLOWED", `origin not allowed: ${JSON.stringify(origin).slice(0, 200)}`);
  }
  const lockedMs = deps.limiter.lockedFor(rateLimitKey(address, origin));
  if (lockedMs > 0) {
    return refusal(429, "AUTH_RATE_LIMITED", `too many failed connects from ${origin ?? address}; locked out for ${Math.ceil(lockedMs / 1000)} s`, lockedMs);
  }
  const full = capacityRefusal(deps);
  if (full !== undefined) deps.log(`gateway ws upgrade from ${address} refused: ${full.detail}`);
  return full;
}
