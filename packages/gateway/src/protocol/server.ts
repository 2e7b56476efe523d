/**
 * The gateway's WebSocket server (OpenClaw protocol v4): listens, hands each upgraded socket to
 * the connection (connection.ts), and owns the close state machine (listening → closing → closed,
 * `close()` idempotent). The jobs it wires together live in their own modules: the handshake
 * (handshake.ts), request dispatch from a typed {@link MethodTable} (dispatch.ts), event fan-out
 * (broadcast.ts), frame writing and limits on the way out (sender.ts), tick and ping
 * (keepalive.ts). Methods themselves live elsewhere and plug in through the table.
 */
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";
import { type VerifyClientCallbackAsync, WebSocketServer } from "ws";
import { type AdmissionDeps, admit } from "./admission.ts";
import { createBroadcaster } from "./broadcast.ts";
import type { BroadcastOptions } from "./broadcast.ts";
import { acceptConnection } from "./connection.ts";
import { createDispatcher } from "./dispatch.ts";
import type { MethodTable } from "./dispatch.ts";
import { CLOSE_SERVICE_RESTART, type ProtocolAuth, createHandshake } from "./handshake.ts";
import { startKeepalive } from "./keepalive.ts";
import { resolveLimits } from "./limits.ts";
import type { ProtocolLimits } from "./limits.ts";
import { createPeerRegistry } from "./peer.ts";
import { type RateLimitSettings, createAuthRateLimiter } from "./rate-limit.ts";
import type { Connection, PeerRegistry } from "./peer.ts";
import { createSender } from "./sender.ts";
import type { Sender } from "./sender.ts";

// node:http through the CommonJS loader, not `import`: an ES import builds the module namespace by
// reading every export, and Node's lazy `http.WebSocket` getter then loads undici (+12 MB RSS and
// ~60 ms at start; measured in docs/benchmarks.md). The gateway uses no export that needs it.
const { createServer } = process.getBuiltinModule("node:http");

export interface ProtocolServerOptions {
  host: string;
  /** 0 = any free port. */
  port: number;
  /** The shared token, or no credential at all (`mode: "none"`: loopback only, the caller checks that). */
  auth: ProtocolAuth;
  /** Browser origins whose pages may open a socket; an upgrade with any other Origin gets 403. Default none. */
  allowedOrigins?: readonly string[];
  /** Throttling of failed connects. Default: upstream's (10 per minute, 5 min lockout, loopback exempt). */
  rateLimit?: RateLimitSettings;
  methods: MethodTable;
  /** Advertised in hello-ok features.events. */
  events: string[];
  serverVersion: string;
  /** Merged into hello-ok.snapshot (presence [], health {}, stateVersion, uptimeMs are filled in if absent). */
  snapshot(): Record<string, unknown>;
  /** Checked when the server starts: a value that is not a positive integer throws a RangeError. */
  limits?: ProtocolLimits;
  log?: (line: string) => void;
}

export interface ProtocolServer {
  readonly url: string;
  readonly port: number;
  readonly host: string;
  /** Event to every authenticated connection that holds `scope` (null = everyone) and passes `filter`. Each connection gets its own next seq. */
  broadcast(event: string, payload: unknown, options?: BroadcastOptions): void;
  /** Event to one authenticated connection (no scope check); false when it is gone or not writable. */
  send(connId: string, event: string, payload: unknown): boolean;
  connections(): Connection[];
  /** Idempotent. Sends `shutdown {reason, restartExpectedMs?}` to everyone, closes sockets 1012 "service restart", clears timers, closes the listener, resolves when all is closed. */
  close(options?: { reason?: string; restartExpectedMs?: number }): Promise<void>;
}

/** Upstream's throttling defaults (gateway.auth.rateLimit). */
export const DEFAULT_RATE_LIMIT: RateLimitSettings = { maxAttempts: 10, windowMs: 60_000, lockoutMs: 300_000, exemptLoopback: true };

/** How long close() waits for peers to answer the close handshake before terminating them. */
const CLOSE_GRACE_MS = 2_000;

function formatUrl(host: string, port: number): string {
  return host.includes(":") ? `ws://[${host}]:${port}` : `ws://${host}:${port}`;
}

/** The HTTP server under the sockets: bounded connections, upgrade request within the handshake timeout, 426 to anything else. */
function createHttpServer(limits: Required<ProtocolLimits>): Server {
  const timeout = limits.handshakeTimeoutMs;
  // A connection that has not sent a whole upgrade request within the handshake timeout is dropped (checked each second at most).
  const options = { headersTimeout: timeout, requestTimeout: timeout, connectionsCheckingInterval: Math.min(1000, timeout) };
  const server = createServer(options, (_request, response) => {
    response.writeHead(426, { "Content-Type": "text/plain", Upgrade: "websocket", Connection: "close" });
    response.end("This is an OpenClaw protocol 4 gateway: connect with a WebSocket client.\n");
  });
  // TCP connections beyond the socket caps (an upgrade refused with 503 still needs one to be told).
  server.maxConnections = limits.maxConnections + limits.maxUnauthenticatedConnections;
  return server;
}

/** A listening server; rejects with the listen error (EADDRINUSE, …). */
async function listen(options: ProtocolServerOptions, limits: Required<ProtocolLimits>, admission: Omit<AdmissionDeps, "limits">, log: (line: string) => void): Promise<{ server: Server; wss: WebSocketServer }> {
  const server = createHttpServer(limits);
  const verifyClient: VerifyClientCallbackAsync = (info, callback) => {
    const refused = admit(info.req, { ...admission, limits });
    if (refused === undefined) callback(true);
    else callback(false, refused.status, refused.body, refused.headers);
  };
  // The pre-auth limit is the server's: ws refuses a larger frame from its header (frame-limit.ts raises it after connect).
  const wss = new WebSocketServer({ server, maxPayload: limits.preauthMaxBytes, perMessageDeflate: false, verifyClient });
  // ws re-emits the http server's errors (EADDRINUSE, …) on the WebSocketServer.
  await new Promise<void>((resolve, reject) => {
    wss.once("error", reject);
    server.listen(options.port, options.host, () => {
      wss.off("error", reject);
      resolve();
    });
  });
  wss.on("error", (error) => log(`gateway server error: ${error.message}`));
  wss.on("wsClientError", (error) => log(`gateway ws client error before upgrade: ${error.message}`));
  return { server, wss };
}

interface CloseDeps {
  server: Server;
  wss: WebSocketServer;
  peers: PeerRegistry;
  sender: Sender;
  log: (line: string) => void;
}

/**
 * The close sequence (the caller has already stopped new work and the timers): `shutdown` to
 * open peers, 1012 to every socket, then wait for them (terminating stragglers after
 * {@link CLOSE_GRACE_MS}) and for the listener.
 */
async function closeAll(deps: CloseDeps, reason: string, restartExpectedMs: number | undefined): Promise<void> {
  const { wss, peers, sender } = deps;
  const payload: Record<string, unknown> = { reason };
  if (restartExpectedMs !== undefined) payload.restartExpectedMs = restartExpectedMs;
  const payloadJson = JSON.stringify(payload);
  const waiting: Promise<void>[] = [];
  for (const peer of peers.all) {
    if (peer.phase === "open") sender.event(peer, "shutdown", payloadJson);
    sender.close(peer, CLOSE_SERVICE_RESTART, "service restart");
    waiting.push(peer.closed);
  }
  const serverClosed = new Promise<void>((resolve) => {
    wss.close(() => deps.server.close(() => resolve()));
    // Connections that never upgraded (a stalled HTTP request) do not hold the close up.
    deps.server.closeIdleConnections();
  });
  let graceTimer: ReturnType<typeof setTimeout> | undefined;
  const grace = new Promise<void>((resolve) => {
    graceTimer = setTimeout(resolve, CLOSE_GRACE_MS);
  });
  const allClosed = Promise.all(waiting).then(() => undefined);
  await Promise.race([allClosed, grace]);
  clearTimeout(graceTimer);
  for (const peer of peers.all) peer.ws.terminate();
  await allClosed;
  await serverClosed;
  deps.log("gateway ws server closed");
}

/**
 * Starts listening and resolves once the port is bound. Limits are checked first (RangeError).
 * Until `close()`, every socket gets the challenge, the handshake, dispatch and events; after it,
 * requests get GATEWAY_CLOSING and new sockets are closed 1012.
 */
export async function startProtocolServer(options: ProtocolServerOptions): Promise<ProtocolServer> {
  const limits = resolveLimits(options.limits);
  const log = options.log ?? (() => undefined);
  const startedAt = Date.now();
  const peers = createPeerRegistry();
  const limiter = createAuthRateLimiter(options.rateLimit ?? DEFAULT_RATE_LIMIT);
  const allowedOrigins = new Set(options.allowedOrigins ?? []);
  const { server, wss } = await listen(options, limits, { allowedOrigins, peers, limiter, log }, log);
  const port = (server.address() as AddressInfo).port;
  const sender = createSender({ maxBufferedBytes: limits.maxBufferedBytes, log });
  const broadcaster = createBroadcaster({ peers, sender, log });
  let closing = false;
  let closePromise: Promise<void> | undefined;
  const isClosing = (): boolean => closing;

  const { auth, serverVersion, methods, events } = options;
  const snapshot = (): Record<string, unknown> => options.snapshot();
  const onHandshakeFrame = createHandshake({ auth, limiter, serverVersion, methods, events, snapshot, limits, startedAt, peers, sender, log });
  const onRequestFrame = createDispatcher({ methods, sender, isClosing, maxInFlightRequests: limits.maxInFlightRequests, log });
  wss.on("connection", (ws, request) => acceptConnection(ws, request, { limits, peers, sender, isClosing, onHandshakeFrame, onRequestFrame, log }));
  const stopKeepalive = startKeepalive({ limits, peers, broadcast: broadcaster.broadcast, log });

  return {
    url: formatUrl(options.host, port),
    port,
    host: options.host,
    ...broadcaster,
    close(closeOptions = {}) {
      closePromise ??= (() => {
        closing = true;
        stopKeepalive();
        return closeAll({ server, wss, peers, sender, log }, closeOptions.reason ?? "gateway stopping", closeOptions.restartExpectedMs);
      })();
      return closePromise;
    },
  };
}
