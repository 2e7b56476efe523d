/**
 * A minimal protocol v4 client for load: requests with their receive time, and the end of each
 * run (`chat` event in state final, error or aborted). Arrival times are taken when the frame is
 * read, before any promise machinery, so latencies are not inflated by the client's own queue.
 */
import { WebSocket } from "ws";
import { withTimeout } from "./stats.ts";

export interface Response {
  readonly ok: boolean;
  readonly payload: unknown;
  readonly error: unknown;
  /** performance.now() when the response frame arrived. */
  readonly at: number;
}

export type EndState = "final" | "error" | "aborted";

export interface RunEnd {
  readonly state: EndState;
  readonly errorKind: string | undefined;
  /** performance.now() when the end event arrived. */
  readonly at: number;
}

export interface BenchClient {
  /** Sends a request; resolves with its response (rejects on timeout or a closed socket). */
  request(method: string, params: unknown, timeoutMs?: number): Promise<Response>;
  /** The end of run `runId`. Call it before the request that starts the run. */
  end(runId: string, timeoutMs?: number): Promise<RunEnd>;
  /** Stops waiting for `runId` (its request failed, so no end will come); the pending end() rejects. */
  cancelEnd(runId: string): void;
  close(): Promise<void>;
}

interface Waiter<T> {
  resolve(value: T): void;
  reject(error: Error): void;
  timer: ReturnType<typeof setTimeout>;
}

const AGENT_EVENT_PREFIX = '{"type":"event","event":"agent"';
const EARLY_LIMIT = 10_000;

/** The bench's `connect` request (protocol v4, the CLI's client id, admin scope), as the text frame it sends. */
export function connectFrame(token: string): string {
  return JSON.stringify({
    type: "req",
    id: "connect",
    method: "connect",
    params: { minProtocol: 4, maxProtocol: 4, client: { id: "cli", mode: "cli", version: "bench", platform: process.platform }, auth: { token }, scopes: ["operator.admin"] },
  });
}

export async function connectClient(url: string, token: string, timeoutMs = 10_000): Promise<BenchClient> {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  const responses = new Map<string, Waiter<Response>>();
  const ends = new Map<string, Waiter<RunEnd>>();
  /** Ends that arrived before anyone asked (bounded). */
  const early = new Map<string, RunEnd>();
  let nextId = 0;
  let closedError: Error | undefined;

  const failAll = (error: Error): void => {
    closedError = error;
    for (const waiter of [...responses.values(), ...ends.values()]) {
      clearTimeout(waiter.timer);
      waiter.reject(error);
    }
    responses.clear();
    ends.clear();
  };

  let onHello: ((frame: { ok: boolean; error?: unknown }) => void) | undefined;
  ws.on("message", (data) => {
    const at = performance.now();
    const text = String(data);
    // Agent events duplicate what the chat events say; skip parsing them.
    if (text.startsWith(AGENT_EVENT_PREFIX)) return;
    const frame = JSON.parse(text) as { type: string; id?: string; event?: string; ok: boolean; payload?: { runId?: string; state?: string; errorKind?: string }; error?: unknown };
    if (frame.type === "res" && frame.id !== undefined) {
      if (frame.id === "connect") {
        onHello?.(frame);
        return;
      }
      const waiter = responses.get(frame.id);
      if (waiter === undefined) return;
      // The `agent` method sends an interim "accepted" response first; this client does not use it.
      responses.delete(frame.id);
      clearTimeout(waiter.timer);
      waiter.resolve({ ok: frame.ok, payload: frame.payload, error: frame.error, at });
      return;
    }
    if (frame.type !== "event") return;
    if (frame.event === "connect.challenge") {
      ws.send(connectFrame(token));
      return;
    }
    const state = frame.payload?.state;
    const runId = frame.payload?.runId;
    if (frame.event !== "chat" || runId === undefined || (state !== "final" && state !== "error" && state !== "aborted")) return;
    const end: RunEnd = { state, errorKind: frame.payload?.errorKind, at };
    const waiter = ends.get(runId);
    if (waiter === undefined) {
      early.set(runId, end);
      if (early.size > EARLY_LIMIT) early.delete(early.keys().next().value as string);
      return;
    }
    ends.delete(runId);
    clearTimeout(waiter.timer);
    waiter.resolve(end);
  });
  ws.on("close", (code) => failAll(new Error(`socket closed (${code})`)));
  ws.on("error", (error) => failAll(error));

  await withTimeout(
    new Promise<void>((resolve, reject) => {
      onHello = (frame) => (frame.ok ? resolve() : reject(new Error(`connect refused: ${JSON.stringify(frame.error)}`)));
      ws.once("error", reject);
      ws.once("close", () => reject(new Error("socket closed during the handshake")));
    }),
    timeoutMs,
    `connect to ${url}`,
  ).catch((error: unknown) => {
    ws.terminate();
    throw error;
  });

  return {
    request(method, params, requestTimeoutMs = 60_000) {
      if (closedError !== undefined) return Promise.reject(closedError);
      const id = `b${++nextId}`;
      return new Promise<Response>((resolve, reject) => {
        const timer = setTimeout(() => {
          responses.delete(id);
          reject(new Error(`${method}: no response within ${requestTimeoutMs} ms`));
        }, requestTimeoutMs);
        responses.set(id, { resolve, reject, timer });
        ws.send(JSON.stringify({ type: "req", id, method, params }));
      });
    },
    end(runId, endTimeoutMs = 60_000) {
      const known = early.get(runId);
      if (known !== undefined) {
        early.delete(runId);
        return Promise.resolve(known);
      }
      if (closedError !== undefined) return Promise.reject(closedError);
      return new Promise<RunEnd>((resolve, reject) => {
        const timer = setTimeout(() => {
          ends.delete(runId);
          reject(new Error(`run ${runId}: no end event within ${endTimeoutMs} ms`));
        }, endTimeoutMs);
        ends.set(runId, { resolve, reject, timer });
      });
    },
    cancelEnd(runId) {
      early.delete(runId);
      const waiter = ends.get(runId);
      if (waiter === undefined) return;
      ends.delete(runId);
      clearTimeout(waiter.timer);
      waiter.reject(new Error(`run ${runId}: cancelled`));
    },
    async close() {
      if (ws.readyState === WebSocket.CLOSED) return;
      const closed = new Promise<void>((resolve) => ws.once("close", () => resolve()));
      ws.close();
      await withTimeout(closed, 5_000, "client close").catch(() => ws.terminate());
    },
  };
}

export interface Sent {
  /** performance.now() right before the request was written. */
  readonly t0: number;
  readonly ack: Response;
  /** The run's end; rejects if the send was refused (already handled, await it only when ack.ok). */
  readonly end: Promise<RunEnd>;
}

/** `chat.send` with its end registered first. */
export async function chatSend(
  client: BenchClient,
  params: { sessionKey: string; message: string; idempotencyKey: string; timeoutMs?: number },
  endTimeoutMs = 60_000,
): Promise<Sent> {
  const end = client.end(params.idempotencyKey, endTimeoutMs);
  end.catch(() => undefined);
  const t0 = performance.now();
  let ack: Response;
  try {
    ack = await client.request("chat.send", params);
  } catch (error) {
    client.cancelEnd(params.idempotencyKey);
    throw error;
  }
  if (!ack.ok) client.cancelEnd(params.idempotencyKey);
  return { t0, ack, end };
}
