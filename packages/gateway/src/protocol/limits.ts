/**
 * The protocol server's limits: safe defaults, checked once when the server starts (a bad value
 * fails construction with a RangeError naming it).
 */

export interface ProtocolLimits {
  /** Largest frame after the handshake; also hello-ok `policy.maxPayload`. Default 25 MiB. */
  maxPayloadBytes?: number;
  /** Largest frame before the handshake, refused from its header before it is read (close 1009). Default 65,536. */
  preauthMaxBytes?: number;
  /** Outbound buffer above which a socket is closed 1008 "slow consumer". Default 50 MiB. */
  maxBufferedBytes?: number;
  /** Time allowed for a successful connect. Default 15,000 ms. */
  handshakeTimeoutMs?: number;
  /** `tick` event period; also hello-ok `policy.tickIntervalMs`. Default 30,000 ms. */
  tickIntervalMs?: number;
  /** WebSocket ping period; a socket that missed the previous pong is terminated. Default 25,000 ms. */
  pingIntervalMs?: number;
  /** Sockets open at once; an upgrade beyond it gets HTTP 503. Default 128. */
  maxConnections?: number;
  /** Sockets at once that have not completed connect; an upgrade beyond it gets HTTP 503. Default 16. */
  maxUnauthenticatedConnections?: number;
  /** Requests one connection may have unanswered at once; more get TOO_MANY_REQUESTS. Default 1024. */
  maxInFlightRequests?: number;
}

export const DEFAULT_LIMITS: Required<ProtocolLimits> = {
  maxPayloadBytes: 25 * 1024 * 1024,
  preauthMaxBytes: 65_536,
  maxBufferedBytes: 50 * 1024 * 1024,
  handshakeTimeoutMs: 15_000,
  tickIntervalMs: 30_000,
  pingIntervalMs: 25_000,
  maxConnections: 128,
  maxUnauthenticatedConnections: 16,
  maxInFlightRequests: 1024,
};

function positiveInt(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`limits.${name} must be a positive integer, got ${value}`);
  return value;
}

/** The defaults overlaid with `limits`; throws a RangeError for any value that is not a positive integer. */
export function resolveLimits(limits: ProtocolLimits | undefined): Required<ProtocolLimits> {
  const merged = { ...DEFAULT_LIMITS, ...limits };
  for (const [name, value] of Object.entries(merged)) positiveInt(name, value);
  return merged;
}
