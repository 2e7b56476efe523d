/**
 * The gateway's WebSocket server (OpenClaw protocol v4): listens, hands each upgraded socket to
 * the connection (connection.ts), and owns the close state machine (listening → closing → closed,
 * `close()` idempotent). The jobs it wires together live in their own modules: the handshake
 * (handshake.ts), request dispatch from a typed {@link MethodTable} (dispatch.ts), event fan-out
 * (broadcast.ts), frame writing and limits on the way out (sender.ts), tick and ping
 * (keepalive.ts). Methods themselves live elsewhere and plug in through the table.
 */
import type { AddressInfo } from "node:net";
import { WebSocketServer } from "ws";
import { createBroadcaster } from "./broadcast.ts";
import type { BroadcastOptions } from "./broadcast.ts";
import { acceptConnection } from "./connection.ts";
import { createDispatcher } from "./dispatch.ts";
import type { MethodTable } from "./dispatch.ts";
import { CLOSE_SERVICE_RESTART, createHandshake } from "./handshake.ts";
import { startKeepalive } from "./keepalive.ts";
import { resolveLimits } from "./limits.ts";
import type { ProtocolLimits } from "./limits.ts";
import { createPeerRegistry } from "./peer.ts";
import type { Connection, PeerRegistry } from "./peer.ts";
import { createSender } from "./sender.ts";
import type { Sender } from "./sender.ts";

export interface ProtocolServerOptions {
  host: string;
  /** 0 = any free port. */
  port: number;
  /** Shared secret; undefined = no auth (loopback only, the caller checks that). */
  token?: string;
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

/** How long close() waits for peers to answer the close handshake before terminating them. */
const CLOSE_GRACE_MS = 2_000;

function formatUrl(host: string, port: number): string {
  return host.includes(":") ? `ws://[${host}]:${port}` : `ws://${host}:${port}`;
}

/** A listening WebSocketServer; rejects with the listen error (EADDRINUSE, …). */
async function listen(options: ProtocolServerOptions, maxPayload: number, log: (line: string) => void): Promise<WebSocketServer> {
  const wss = new WebSocketServer({ host: options.host, port: options.port, maxPayload, perMessageDeflate: false });
  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error): void => {
      wss.off("listening", onListening);
      reject(error);
    };
    const onListening = (): void => {
      wss.off("error", onError);
      resolve();
    };
    wss.once("error", onError);
    wss.once("listening", onListening);
  });
  wss.on("error", (error) => log(`gateway ws server error: ${error.message}`));
  wss.on("wsClientError", (error) => log(`gateway ws client error before upgrade: ${error.message}`));
  return wss;
}

interface CloseDeps {
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
    wss.close(() => resolve());
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
  const wss = await listen(options, limits.maxPayloadBytes, log);
  const port = (wss.address() as AddressInfo).port;
  const peers = createPeerRegistry();
  const sender = createSender({ maxBufferedBytes: limits.maxBufferedBytes, log });
  const broadcaster = createBroadcaster({ peers, sender, log });
  let closing = false;
  let closePromise: Promise<void> | undefined;
  const isClosing = (): boolean => closing;

  const { token, serverVersion, methods, events } = options;
  const snapshot = (): Record<string, unknown> => options.snapshot();
  const onHandshakeFrame = createHandshake({ token, serverVersion, methods, events, snapshot, limits, startedAt, peers, sender, log });
  const onRequestFrame = createDispatcher({ methods, sender, isClosing, log });
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
        return closeAll({ wss, peers, sender, log }, closeOptions.reason ?? "gateway stopping", closeOptions.restartExpectedMs);
      })();
      return closePromise;
    },
  };
}
