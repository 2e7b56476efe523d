import { platform } from "node:os";
import { WebSocket } from "ws";
import { GatewayError, type WireError } from "../errors.ts";
import { GATEWAY_VERSION } from "../version.ts";
import { PROTOCOL_VERSION } from "../protocol/frames.ts";

/** Default bound on connecting, the handshake and each call, in ms. */
export const DEFAULT_CLIENT_TIMEOUT_MS = 10_000; // 10 s

/** Options of {@link connectGateway}. */
export interface ConnectGatewayOptions {
  /** `ws://host:port` of the gateway. */
  url: string;
  /** The gateway's shared secret (`gateway.auth.token`). Default: none. */
  token?: string | undefined;
  /** Operator scopes to ask for. Default: the gateway's default (read + write). */
  scopes?: readonly string[] | undefined;
  /** Bound on opening the socket plus the handshake, and the default bound of each call, in ms. Default 10,000. */
  timeoutMs?: number | undefined;
  /** Who we are in `connect.client`. Default `{ id: "cli", mode: "cli" }`. */
  client?: { id?: string; mode?: string; version?: string } | undefined;
}

/** Options of one {@link GatewayClient.call}. */
export interface CallOptions {
  /**
   * The method answers `{status: "accepted"}` first and its result later on the same id (upstream's
   * `agent`): treat the accepted reply as interim and resolve with the final one. Default false.
   */
  expectFinal?: boolean | undefined;
  /** Bound on the answer (the final one with expectFinal), in ms. Default: the connection's timeoutMs. */
  timeoutMs?: number | undefined;
}

/** An event frame as received. */
export interface GatewayEvent {
  readonly event: string;
  readonly payload: unknown;
  readonly seq?: number | undefined;
}

export type EventListener = (event: GatewayEvent) => void;

/** A connected, authenticated operator connection. */
export interface GatewayClient {
  readonly url: string;
  /** The `hello-ok` payload of the handshake. */
  readonly hello: Readonly<Record<string, unknown>>;
  /**
   * One request. Resolves with the payload of an `ok:true` answer; rejects with GatewayError
   * `RPC_FAILED` (the gateway's error in `details.remote`), `REQUEST_TIMEOUT`, or
   * `GATEWAY_UNREACHABLE` when the connection closes first.
   */
  call<T = unknown>(method: string, params?: unknown, options?: CallOptions): Promise<T>;
  /** Listens to one event name, or `"*"` for every event. Returns the unsubscribe function. */
  on(event: string, listener: EventListener): () => void;
  /** Settles when the socket has closed, with the close code and reason. */
  readonly closed: Promise<{ code: number; reason: string }>;
  /** Closes the socket (normal closure). Idempotent; pending calls reject with GATEWAY_UNREACHABLE. */
  close(): Promise<void>;
}

/** The gateway's error of a failed call (`RPC_FAILED`), if `error` is one. */
export function remoteErrorOf(error: unknown): WireError | undefined {
  if (!(error instanceof GatewayError) || error.code !== "RPC_FAILED") return undefined;
  const remote = error.details?.["remote"];
  return typeof remote === "object" && remote !== null ? (remote as WireError) : undefined;
}

/** The most specific code of a gateway error: ours from `details.code`, else the wire code. */
export function remoteErrorCode(remote: WireError): string {
  const details = remote.details;
  const inner = typeof details === "object" && details !== null ? (details as Record<string, unknown>)["code"] : undefined;
  return typeof inner === "string" && inner !== "" ? inner : remote.code;
}

interface Pending {
  method: string;
  expectFinal: boolean;
  timer: ReturnType<typeof setTimeout>;
  resolve(payload: unknown): void;
  reject(error: Error): void;
}

interface Frame {
  type?: unknown;
  id?: unknown;
  ok?: unknown;
  event?: unknown;
  payload?: unknown;
  error?: unknown;
  seq?: unknown;
}

function describeSocketError(error: unknown): string {
  const code = (error as { code?: unknown } | undefined)?.code;
  const message = error instanceof Error ? error.message : String(error);
  switch (code) {
    case "ECONNREFUSED":
      return "connection refused (ECONNREFUSED)";
    case "ENOTFOUND":
      return "host not found (ENOTFOUND)";
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      return `host unreachable (${code})`;
    case "ECONNRESET":
      return "connection reset (ECONNRESET)";
    default:
      return typeof code === "string" ? `${message} (${code})` : message;
  }
}

function asWireError(value: unknown): WireError {
  if (typeof value === "object" && value !== null) {
    const record = value as Record<string, unknown>;
    const wire: WireError = {
      code: typeof record["code"] === "string" ? record["code"] : "UNAVAILABLE",
      message: typeof record["message"] === "string" ? record["message"] : "request failed",
    };
    if (record["details"] !== undefined) wire.details = record["details"];
    if (typeof record["retryable"] === "boolean") wire.retryable = record["retryable"];
    if (typeof record["retryAfterMs"] === "number") wire.retryAfterMs = record["retryAfterMs"];
    return wire;
  }
  return { code: "UNAVAILABLE", message: "request failed" };
}

function checkTimeout(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1 || value > 2 ** 31 - 1) {
    throw new RangeError(`${name} must be an integer from 1 to ${2 ** 31 - 1} (milliseconds), got ${value}`);
  }
  return value;
}

/**
 * Connects to an OpenClaw protocol v4 gateway as an operator: opens the socket, waits for
 * `connect.challenge`, sends `connect` (client `{id: "cli", mode: "cli", version, platform}`, the
 * token, the scopes) and resolves once `hello-ok` arrives.
 *
 * @throws GatewayError `GATEWAY_UNREACHABLE` when the socket cannot be opened within timeoutMs
 *   (refused, unknown host, HTTP error); `HANDSHAKE_FAILED` when no challenge comes, the gateway
 *   rejects `connect` (token, protocol) or closes during the handshake.
 */
export async function connectGateway(options: ConnectGatewayOptions): Promise<GatewayClient> {
  const url = options.url;
  const timeoutMs = checkTimeout("timeoutMs", options.timeoutMs ?? DEFAULT_CLIENT_TIMEOUT_MS);
  let ws: WebSocket;
  try {
    ws = new WebSocket(url, { handshakeTimeout: timeoutMs, perMessageDeflate: false });
  } catch (error) {
    throw new GatewayError("GATEWAY_UNREACHABLE", `Cannot connect to "${url}": ${error instanceof Error ? error.message : String(error)}`, { cause: error, details: { url } });
  }

  const listeners = new Map<string, Set<EventListener>>();
  const pending = new Map<string, Pending>();
  let nextId = 0;
  let opened = false;
  let closeInfo: { code: number; reason: string } | undefined;
  let resolveClosed!: (info: { code: number; reason: string }) => void;
  const closed = new Promise<{ code: number; reason: string }>((resolve) => (resolveClosed = resolve));
  let handshake: { onFrame(frame: Frame): void; onClose(info: { code: number; reason: string }): void } | undefined;

  function emit(event: GatewayEvent): void {
    for (const name of [event.event, "*"]) {
      for (const listener of listeners.get(name) ?? []) {
        try {
          listener(event);
        } catch {
          // A listener's failure is its own; the connection goes on.
        }
      }
    }
  }

  function failPending(error: () => GatewayError): void {
    for (const [id, entry] of pending) {
      clearTimeout(entry.timer);
      pending.delete(id);
      entry.reject(error());
    }
  }

  ws.on("message", (data) => {
    let frame: Frame;
    try {
      frame = JSON.parse(String(data)) as Frame;
    } catch {
      return;
    }
    if (typeof frame !== "object" || frame === null) return;
    if (handshake !== undefined) {
      handshake.onFrame(frame);
      return;
    }
    if (frame.type === "event" && typeof frame.event === "string") {
      emit({ event: frame.event, payload: frame.payload, seq: typeof frame.seq === "number" ? frame.seq : undefined });
      return;
    }
    if (frame.type !== "res" || typeof frame.id !== "string") return;
    const entry = pending.get(frame.id);
    if (entry === undefined) return;
    if (frame.ok === true) {
      const payload = frame.payload as { status?: unknown } | undefined;
      // Upstream's two-phase reply: the same id answers {status:"accepted"} first, then the result.
      if (entry.expectFinal && typeof payload === "object" && payload !== null && payload.status === "accepted") return;
      clearTimeout(entry.timer);
      pending.delete(frame.id);
      entry.resolve(frame.payload);
      return;
    }
    clearTimeout(entry.timer);
    pending.delete(frame.id);
    const remote = asWireError(frame.error);
    entry.reject(
      new GatewayError("RPC_FAILED", `${entry.method} failed: ${remoteErrorCode(remote)}: ${remote.message}`, {
        fix: null,
        details: { method: entry.method, remote, payload: frame.payload },
      }),
    );
  });

  ws.on("close", (code, reason) => {
    closeInfo = { code, reason: reason.toString("utf8") };
    handshake?.onClose(closeInfo);
    const info = closeInfo;
    failPending(
      () =>
        new GatewayError("GATEWAY_UNREACHABLE", `The connection to ${url} closed (${info.code}${info.reason === "" ? "" : ` ${info.reason}`}) before the gateway answered`, {
          details: { url, closeCode: info.code, closeReason: info.reason },
        }),
    );
    resolveClosed(closeInfo);
  });

  // The socket and the handshake (challenge → connect → hello-ok), together within timeoutMs. The
  // handshake handler exists before the socket opens: the challenge may arrive right after "open".
  const hello = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const connectId = "connect-1";
    let settled = false;
    const finish = (error: GatewayError | undefined, payload?: Record<string, unknown>): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      handshake = undefined;
      if (error === undefined) {
        resolve(payload as Record<string, unknown>);
        return;
      }
      reject(error);
      if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.terminate();
    };
    const unreachable = (detail: string, cause?: unknown): GatewayError =>
      new GatewayError("GATEWAY_UNREACHABLE", `Cannot reach the gateway at ${url}: ${detail}`, {
        details: { url, errno: (cause as { code?: unknown } | undefined)?.code },
        ...(cause === undefined ? {} : { cause }),
      });
    const handshakeFailed = (detail: string, extra: Record<string, unknown> = {}): GatewayError => new GatewayError("HANDSHAKE_FAILED", detail, { details: { url, ...extra } });
    const timer = setTimeout(
      () => finish(opened ? handshakeFailed(`The gateway at ${url} did not complete the handshake within ${timeoutMs} ms`) : unreachable(`no connection within ${timeoutMs} ms`)),
      timeoutMs,
    );
    ws.on("error", (error) => {
      // After "open", socket errors surface as "close".
      if (!opened) finish(unreachable(describeSocketError(error), error));
    });
    ws.on("open", () => {
      opened = true;
    });
    handshake = {
      onFrame(frame) {
        if (frame.type === "event" && frame.event === "connect.challenge") {
          const params: Record<string, unknown> = {
            minProtocol: PROTOCOL_VERSION,
            maxProtocol: PROTOCOL_VERSION,
            client: {
              id: options.client?.id ?? "cli",
              mode: options.client?.mode ?? "cli",
              version: options.client?.version ?? GATEWAY_VERSION,
              platform: platform(),
            },
            role: "operator",
          };
          if (options.scopes !== undefined) params["scopes"] = [...options.scopes];
          if (options.token !== undefined && options.token !== "") params["auth"] = { token: options.token };
          ws.send(JSON.stringify({ type: "req", id: connectId, method: "connect", params }));
          return;
        }
        if (frame.type !== "res" || frame.id !== connectId) return;
        if (frame.ok === true && typeof frame.payload === "object" && frame.payload !== null) {
          finish(undefined, frame.payload as Record<string, unknown>);
          return;
        }
        const remote = asWireError(frame.error);
        finish(handshakeFailed(`The gateway at ${url} rejected the connection: ${remoteErrorCode(remote)}: ${remote.message}`, { remote }));
      },
      onClose(info) {
        const why = `${info.code}${info.reason === "" ? "" : ` ${info.reason}`}`;
        finish(opened ? handshakeFailed(`The gateway at ${url} closed the connection during the handshake (${why})`, { closeCode: info.code, closeReason: info.reason }) : unreachable(`the connection closed (${why})`));
      },
    };
  });

  let closing: Promise<void> | undefined;
  return {
    url,
    hello,
    closed,
    call<T = unknown>(method: string, params?: unknown, callOptions: CallOptions = {}): Promise<T> {
      if (!opened || closeInfo !== undefined || ws.readyState !== WebSocket.OPEN) {
        return Promise.reject(new GatewayError("GATEWAY_UNREACHABLE", `The connection to ${url} is closed`, { details: { url } }));
      }
      const callTimeout = checkTimeout("timeoutMs", callOptions.timeoutMs ?? timeoutMs);
      const id = `req-${++nextId}`;
      return new Promise<T>((resolve, reject) => {
        const timer = setTimeout(() => {
          pending.delete(id);
          reject(new GatewayError("REQUEST_TIMEOUT", `${method} got no ${callOptions.expectFinal === true ? "final " : ""}answer within ${callTimeout} ms`, { details: { method, timeoutMs: callTimeout } }));
        }, callTimeout);
        pending.set(id, { method, expectFinal: callOptions.expectFinal === true, timer, resolve: resolve as (payload: unknown) => void, reject });
        const frame: Record<string, unknown> = { type: "req", id, method };
        if (params !== undefined) frame["params"] = params;
        ws.send(JSON.stringify(frame), (error) => {
          if (error === undefined || error === null || !pending.has(id)) return;
          clearTimeout(timer);
          pending.delete(id);
          reject(new GatewayError("GATEWAY_UNREACHABLE", `Cannot send ${method} to ${url}: ${describeSocketError(error)}`, { cause: error, details: { url } }));
        });
      });
    },
    on(event, listener) {
      let set = listeners.get(event);
      if (set === undefined) listeners.set(event, (set = new Set()));
      set.add(listener);
      return () => {
        set.delete(listener);
      };
    },
    close() {
      closing ??= (async () => {
        if (ws.readyState === WebSocket.CLOSED) return;
        ws.close(1000, "client closing");
        let timer: ReturnType<typeof setTimeout> | undefined;
        // A peer that never answers the close handshake is cut off after a short grace.
        await Promise.race([closed, new Promise<void>((resolve) => (timer = setTimeout(resolve, 1000)))]);
        clearTimeout(timer);
        if (closeInfo === undefined) ws.terminate();
        await closed;
      })();
      return closing;
    },
  };
}
