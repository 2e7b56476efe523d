/**
 * The gateway's WebSocket server: OpenClaw protocol v4 framing, handshake, shared-secret auth,
 * scopes, per-connection seq, tick and keepalive, limits, method dispatch from a typed table,
 * event broadcast and graceful close. Methods themselves live elsewhere and plug in through
 * {@link MethodTable}.
 */
import { randomUUID } from "node:crypto";
import type { AddressInfo } from "node:net";
import { WebSocket, WebSocketServer } from "ws";
import type { RawData } from "ws";
import type { z } from "zod";
import { GatewayError, toWireError } from "../errors.ts";
import type { WireError } from "../errors.ts";
import { PROTOCOL_VERSION, encodeEvent, encodeResponse, formatIssues, isFailureReply, parseJson, requestFrameSchema } from "./frames.ts";
import type { RequestFrame } from "./frames.ts";
import {
  CLOSE_INTERNAL_ERROR,
  CLOSE_NORMAL,
  CLOSE_POLICY_VIOLATION,
  CLOSE_SERVICE_RESTART,
  CLOSE_TOO_BIG,
  evaluateConnect,
  truncateCloseReason,
} from "./handshake.ts";
import { defaultEventScope, hasScope, isScope } from "./scopes.ts";
import type { Scope } from "./scopes.ts";

/** An authenticated connection as method handlers see it. */
export interface Connection {
  readonly connId: string;
  readonly scopes: ReadonlySet<string>;
  readonly client: { id: string; mode: string; version?: string };
  readonly caps: ReadonlySet<string>;
  /** Per-connection state for method handlers, e.g. "sessions.subscribed". */
  readonly data: Map<string, unknown>;
}

export interface MethodContext {
  conn: Connection;
  requestId: string;
  /** Send an interim ok response with the same id (the `agent` method's {status:"accepted"} before its final result). */
  interim(payload: unknown): void;
  /**
   * Settles (never rejects) once the first response to this request, interim or final, has been
   * written to the socket, or could not be because the socket is gone. Work that emits events about
   * what the request started waits for it, so no such event can precede the response.
   */
  acked: Promise<void>;
  /** Aborted when the socket closes. */
  signal: AbortSignal;
}

export interface MethodSpec<P> {
  /**
   * The scope the caller needs, checked before the params are validated. A function gets the
   * validated params when they validate and otherwise the raw params (read them defensively);
   * if it throws or returns something that is not a scope, `operator.admin` is required.
   */
  scope: Scope | ((params: P) => Scope);
  params: z.ZodType<P>;
  handler(params: P, ctx: MethodContext): Promise<unknown>;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- a table mixes specs of different param types
export type MethodTable = Record<string, MethodSpec<any>>;

/** Type helper: infers `P` from the params schema. */
export function defineMethod<P>(spec: MethodSpec<P>): MethodSpec<P> {
  return spec;
}

export interface ProtocolLimits {
  /** Largest frame after the handshake; also hello-ok `policy.maxPayload`. Default 25 MiB. */
  maxPayloadBytes?: number;
  /** Largest frame before the handshake; larger closes 1009. Default 65,536. */
  preauthMaxBytes?: number;
  /** Outbound buffer above which a socket is closed 1008 "slow consumer". Default 50 MiB. */
  maxBufferedBytes?: number;
  /** Time allowed for a successful connect. Default 15,000 ms. */
  handshakeTimeoutMs?: number;
  /** `tick` event period; also hello-ok `policy.tickIntervalMs`. Default 30,000 ms. */
  tickIntervalMs?: number;
  /** WebSocket ping period; a socket that missed the previous pong is terminated. Default 25,000 ms. */
  pingIntervalMs?: number;
}

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
  limits?: ProtocolLimits;
  log?: (line: string) => void;
}

export interface BroadcastOptions {
  /** Scope a connection needs; null = every authenticated connection. Default: by event name (chat, agent, sessions.changed, session.message, presence → operator.read; others → null). */
  scope?: Scope | null;
  filter?: (conn: Connection) => boolean;
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

export const DEFAULT_LIMITS: Required<ProtocolLimits> = {
  maxPayloadBytes: 25 * 1024 * 1024,
  preauthMaxBytes: 65_536,
  maxBufferedBytes: 50 * 1024 * 1024,
  handshakeTimeoutMs: 15_000,
  tickIntervalMs: 30_000,
  pingIntervalMs: 25_000,
};

/** How long close() waits for peers to answer the close handshake before terminating them. */
const CLOSE_GRACE_MS = 2_000;

interface Peer {
  readonly ws: WebSocket;
  readonly remote: string;
  /** handshake → open → closing → closed; a rejected handshake goes straight to closing. */
  phase: "handshake" | "open" | "closing" | "closed";
  conn: Connection | undefined;
  seq: number;
  alive: boolean;
  handshakeTimer: ReturnType<typeof setTimeout> | undefined;
  readonly abort: AbortController;
  readonly closed: Promise<void>;
}

function rawDataToBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (Array.isArray(data)) return Buffer.concat(data);
  return Buffer.from(data);
}

function positiveInt(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value <= 0) throw new RangeError(`limits.${name} must be a positive integer, got ${value}`);
  return value;
}

function resolveLimits(limits: ProtocolLimits | undefined): Required<ProtocolLimits> {
  const merged = { ...DEFAULT_LIMITS, ...limits };
  for (const [name, value] of Object.entries(merged)) positiveInt(name, value);
  return merged;
}

function formatUrl(host: string, port: number): string {
  return host.includes(":") ? `ws://[${host}]:${port}` : `ws://${host}:${port}`;
}

export async function startProtocolServer(options: ProtocolServerOptions): Promise<ProtocolServer> {
  const limits = resolveLimits(options.limits);
  const log = options.log ?? (() => undefined);
  const methods = options.methods;
  const authMethod = options.token === undefined ? "none" : "token";
  const startedAt = Date.now();

  const wss = new WebSocketServer({ host: options.host, port: options.port, maxPayload: limits.maxPayloadBytes, perMessageDeflate: false });
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

  const port = (wss.address() as AddressInfo).port;
  const peers = new Set<Peer>();
  const byConnId = new Map<string, Peer>();
  let closing = false;
  let closePromise: Promise<void> | undefined;

  // ----- sending ------------------------------------------------------------------------------

  function closePeer(peer: Peer, code: number, reason: string): void {
    if (peer.phase !== "closed") peer.phase = "closing";
    clearHandshakeTimer(peer);
    try {
      peer.ws.close(code, truncateCloseReason(reason));
    } catch (error) {
      log(`gateway ws close failed: ${(error as Error).message}`);
      peer.ws.terminate();
    }
  }

  /** Writes one frame; false when the socket is not open or was just closed as a slow consumer. */
  function write(peer: Peer, text: string): boolean {
    if (peer.ws.readyState !== WebSocket.OPEN) return false;
    if (peer.ws.bufferedAmount > limits.maxBufferedBytes) {
      log(`gateway ws slow consumer conn=${peer.conn?.connId ?? "-"} buffered=${peer.ws.bufferedAmount}`);
      closePeer(peer, CLOSE_POLICY_VIOLATION, "slow consumer");
      return false;
    }
    peer.ws.send(text);
    return true;
  }

  function respond(peer: Peer, id: string, ok: boolean, payload?: unknown, error?: WireError): void {
    let text: string;
    try {
      text = encodeResponse(id, ok, payload, error);
    } catch (serializeError) {
      log(`gateway response for ${id} could not be serialised: ${(serializeError as Error).message}`);
      text = encodeResponse(id, false, undefined, toWireError(serializeError));
    }
    write(peer, text);
  }

  function respondError(peer: Peer, id: string, error: unknown): void {
    respond(peer, id, false, undefined, toWireError(error));
  }

  /** Sends an event with the peer's next seq (consumed only when the frame is written). */
  function writeEvent(peer: Peer, event: string, payloadJson: string | undefined): boolean {
    if (peer.ws.readyState !== WebSocket.OPEN) return false;
    const seq = peer.seq + 1;
    if (!write(peer, encodeEvent(event, payloadJson, seq))) return false;
    peer.seq = seq;
    return true;
  }

  function broadcast(event: string, payload: unknown, broadcastOptions: BroadcastOptions = {}): void {
    const scope = broadcastOptions.scope === undefined ? defaultEventScope(event) : broadcastOptions.scope;
    const payloadJson = JSON.stringify(payload) as string | undefined;
    for (const peer of byConnId.values()) {
      const conn = peer.conn;
      if (conn === undefined || peer.phase !== "open") continue;
      if (scope !== null && !hasScope(conn.scopes, scope)) continue;
      if (broadcastOptions.filter !== undefined) {
        let pass: boolean;
        try {
          pass = broadcastOptions.filter(conn);
        } catch (error) {
          log(`gateway broadcast filter for ${event} threw: ${(error as Error).message}`);
          pass = false;
        }
        if (!pass) continue;
      }
      writeEvent(peer, event, payloadJson);
    }
  }

  function send(connId: string, event: string, payload: unknown): boolean {
    const peer = byConnId.get(connId);
    if (peer === undefined || peer.phase !== "open") return false;
    return writeEvent(peer, event, JSON.stringify(payload) as string | undefined);
  }

  // ----- handshake ----------------------------------------------------------------------------

  function clearHandshakeTimer(peer: Peer): void {
    if (peer.handshakeTimer !== undefined) {
      clearTimeout(peer.handshakeTimer);
      peer.handshakeTimer = undefined;
    }
  }

  function buildHelloOk(conn: Connection): Record<string, unknown> {
    const now = Date.now();
    return {
      type: "hello-ok",
      protocol: PROTOCOL_VERSION,
      server: { version: options.serverVersion, connId: conn.connId },
      features: { methods: Object.keys(methods), events: [...options.events] },
      snapshot: {
        presence: [],
        health: { ok: true, ts: now },
        stateVersion: { presence: 0, health: 0 },
        uptimeMs: now - startedAt,
        ...options.snapshot(),
      },
      auth: { role: "operator", scopes: [...conn.scopes], method: authMethod },
      policy: { maxPayload: limits.maxPayloadBytes, maxBufferedBytes: limits.maxBufferedBytes, tickIntervalMs: limits.tickIntervalMs },
    };
  }

  function handleHandshakeFrame(peer: Peer, text: string): void {
    const frame = requestFrameSchema.safeParse(parseJson(text));
    if (!frame.success) {
      log(`gateway ws ${peer.remote}: first frame is not a request; closing`);
      closePeer(peer, CLOSE_POLICY_VIOLATION, "invalid handshake");
      return;
    }
    const { id, method } = frame.data;
    if (method !== "connect") {
      const error = new GatewayError("INVALID_HANDSHAKE", "invalid handshake: first request must be connect", { fix: null });
      respondError(peer, id, error);
      closePeer(peer, CLOSE_POLICY_VIOLATION, error.message);
      return;
    }
    const verdict = evaluateConnect(frame.data.params, options.token);
    if (verdict.kind === "rejected") {
      log(`gateway ws ${peer.remote}: connect rejected: ${verdict.error.message}`);
      respondError(peer, id, verdict.error);
      closePeer(peer, verdict.closeCode, verdict.error.message);
      return;
    }
    const conn: Connection = {
      connId: randomUUID(),
      scopes: verdict.scopes,
      client: verdict.client,
      caps: verdict.caps,
      data: new Map(),
    };
    let hello: Record<string, unknown>;
    try {
      hello = buildHelloOk(conn);
    } catch (error) {
      log(`gateway hello-ok snapshot failed: ${(error as Error).message}`);
      respondError(peer, id, error);
      closePeer(peer, CLOSE_INTERNAL_ERROR, "internal error");
      return;
    }
    clearHandshakeTimer(peer);
    peer.conn = conn;
    peer.phase = "open";
    byConnId.set(conn.connId, peer);
    log(`gateway ws connected conn=${conn.connId} client=${conn.client.id}/${conn.client.mode} scopes=${[...conn.scopes].join(",")}`);
    respond(peer, id, true, hello);
  }

  // ----- requests -----------------------------------------------------------------------------

  function requiredScope(spec: MethodTable[string], params: unknown): Scope {
    if (typeof spec.scope !== "function") return spec.scope;
    try {
      const scope: unknown = spec.scope(params);
      return isScope(scope) ? scope : "operator.admin";
    } catch {
      return "operator.admin";
    }
  }

  async function dispatch(peer: Peer, conn: Connection, frame: RequestFrame): Promise<void> {
    const { id, method } = frame;
    const spec = Object.hasOwn(methods, method) ? methods[method] : undefined;
    if (spec === undefined) {
      respondError(peer, id, new GatewayError("UNKNOWN_METHOD", `unknown method: ${method}`, { fix: null }));
      return;
    }
    const raw = frame.params ?? {};
    const parsed = await spec.params.safeParseAsync(raw);
    const scope = requiredScope(spec, parsed.success ? parsed.data : raw);
    if (!hasScope(conn.scopes, scope)) {
      respondError(
        peer,
        id,
        new GatewayError("MISSING_SCOPE", `missing scope: ${scope}`, { fix: null, details: { missingScope: scope, requiredScopes: [scope] } }),
      );
      return;
    }
    if (!parsed.success) {
      const text = formatIssues(parsed.error.issues, raw);
      respondError(peer, id, new GatewayError("INVALID_PARAMS", `invalid ${method} params: ${text}`, { fix: null }));
      return;
    }
    let finished = false;
    let markAcked: () => void = () => undefined;
    const acked = new Promise<void>((resolve) => {
      markAcked = resolve;
    });
    const ctx: MethodContext = {
      conn,
      requestId: id,
      interim(payload: unknown): void {
        if (finished) return;
        respond(peer, id, true, payload);
        markAcked();
      },
      acked,
      signal: peer.abort.signal,
    };
    try {
      const result = await spec.handler(parsed.data, ctx);
      finished = true;
      if (isFailureReply(result)) respond(peer, id, false, result.payload, toWireError(result.error));
      else respond(peer, id, true, result);
    } catch (error) {
      finished = true;
      if (!(error instanceof GatewayError)) log(`gateway method ${method} failed: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}`);
      respondError(peer, id, error);
    } finally {
      markAcked();
    }
  }

  function handleRequestFrame(peer: Peer, conn: Connection, text: string): void {
    const json = parseJson(text);
    const frame = requestFrameSchema.safeParse(json);
    if (!frame.success) {
      const id = typeof json === "object" && json !== null && "id" in json ? json.id : undefined;
      if (typeof id === "string" && id !== "") {
        const detail = formatIssues(frame.error.issues, json);
        respondError(peer, id, new GatewayError("INVALID_PARAMS", `invalid request frame: ${detail}`, { fix: null }));
      } else {
        log(`gateway ws conn=${conn.connId}: ignoring a frame that is not a request`);
      }
      return;
    }
    const { id, method } = frame.data;
    if (method === "connect") {
      respondError(peer, id, new GatewayError("INVALID_HANDSHAKE", "already connected", { fix: null }));
      return;
    }
    if (closing) {
      respondError(peer, id, new GatewayError("GATEWAY_CLOSING", "gateway is shutting down", { retryable: true }));
      return;
    }
    dispatch(peer, conn, frame.data).catch((error: unknown) => {
      log(`gateway dispatch of ${method} failed: ${(error as Error).message}`);
      respondError(peer, id, error);
    });
  }

  // ----- sockets ------------------------------------------------------------------------------

  wss.on("connection", (ws, request) => {
    const remote = `${request.socket.remoteAddress ?? "?"}:${request.socket.remotePort ?? "?"}`;
    let resolveClosed: () => void = () => undefined;
    const closed = new Promise<void>((resolve) => {
      resolveClosed = resolve;
    });
    const peer: Peer = { ws, remote, phase: "handshake", conn: undefined, seq: 0, alive: true, handshakeTimer: undefined, abort: new AbortController(), closed };
    peers.add(peer);

    ws.on("error", (error) => log(`gateway ws ${remote} error: ${error.message}`));
    ws.on("pong", () => {
      peer.alive = true;
    });
    ws.on("close", (code, reason) => {
      const wasOpen = peer.conn !== undefined;
      peer.phase = "closed";
      clearHandshakeTimer(peer);
      peers.delete(peer);
      if (peer.conn !== undefined) byConnId.delete(peer.conn.connId);
      peer.abort.abort();
      if (wasOpen) log(`gateway ws closed conn=${peer.conn?.connId ?? "-"} code=${code} reason=${reason.toString("utf8")}`);
      resolveClosed();
    });

    if (closing) {
      closePeer(peer, CLOSE_SERVICE_RESTART, "service restart");
      return;
    }

    ws.on("message", (data, _isBinary) => {
      const buffer = rawDataToBuffer(data);
      if (peer.phase === "handshake") {
        if (buffer.length > limits.preauthMaxBytes) {
          log(`gateway ws ${remote}: pre-auth frame of ${buffer.length} bytes; closing`);
          closePeer(peer, CLOSE_TOO_BIG, "preauth payload too large");
          return;
        }
        handleHandshakeFrame(peer, buffer.toString("utf8"));
      } else if (peer.phase === "open" && peer.conn !== undefined) {
        handleRequestFrame(peer, peer.conn, buffer.toString("utf8"));
      }
    });

    peer.handshakeTimer = setTimeout(() => {
      peer.handshakeTimer = undefined;
      if (peer.phase === "handshake") {
        log(`gateway ws ${remote}: handshake timeout`);
        closePeer(peer, CLOSE_NORMAL, "");
      }
    }, limits.handshakeTimeoutMs);

    write(peer, encodeEvent("connect.challenge", JSON.stringify({ nonce: randomUUID(), ts: Date.now() }), undefined));
  });

  // ----- timers -------------------------------------------------------------------------------

  const tickTimer = setInterval(() => {
    broadcast("tick", { ts: Date.now() }, { scope: null });
  }, limits.tickIntervalMs);

  const pingTimer = setInterval(() => {
    for (const peer of byConnId.values()) {
      if (peer.phase !== "open") continue;
      if (!peer.alive) {
        log(`gateway ws conn=${peer.conn?.connId ?? "-"} missed a pong; terminating`);
        peer.ws.terminate();
        continue;
      }
      peer.alive = false;
      try {
        peer.ws.ping();
      } catch (error) {
        log(`gateway ws ping failed: ${(error as Error).message}`);
      }
    }
  }, limits.pingIntervalMs);

  // ----- close --------------------------------------------------------------------------------

  async function shutdown(reason: string, restartExpectedMs: number | undefined): Promise<void> {
    closing = true;
    clearInterval(tickTimer);
    clearInterval(pingTimer);
    const payload: Record<string, unknown> = { reason };
    if (restartExpectedMs !== undefined) payload.restartExpectedMs = restartExpectedMs;
    const payloadJson = JSON.stringify(payload);
    const waiting: Promise<void>[] = [];
    for (const peer of peers) {
      if (peer.phase === "open") writeEvent(peer, "shutdown", payloadJson);
      closePeer(peer, CLOSE_SERVICE_RESTART, "service restart");
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
    for (const peer of peers) peer.ws.terminate();
    await allClosed;
    await serverClosed;
    log("gateway ws server closed");
  }

  return {
    url: formatUrl(options.host, port),
    port,
    host: options.host,
    broadcast,
    send,
    connections: () => [...byConnId.values()].flatMap((peer) => (peer.conn !== undefined && peer.phase === "open" ? [peer.conn] : [])),
    close(closeOptions = {}) {
      closePromise ??= shutdown(closeOptions.reason ?? "gateway stopping", closeOptions.restartExpectedMs);
      return closePromise;
    },
  };
}
