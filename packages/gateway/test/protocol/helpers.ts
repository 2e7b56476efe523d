/** Test harness: a protocol server on 127.0.0.1:0 and `ws` clients that queue what they receive. */
import { onTestFinished } from "vitest";
import { WebSocket } from "ws";
import type { ClientOptions } from "ws";
import { z } from "zod";
import { defineMethod, startProtocolServer } from "../../src/protocol/index.ts";
import type { MethodTable, ProtocolServer, ProtocolServerOptions } from "../../src/protocol/index.ts";

export const TOKEN = "s3cret-token";

/** Generous bound used only to turn a hang into a failure. */
export const HANG_MS = 5_000;

export interface Frame {
  type: string;
  id?: string;
  ok?: boolean;
  event?: string;
  seq?: number;
  payload?: unknown;
  error?: { code: string; message: string; details?: Record<string, unknown>; retryable?: boolean };
  [key: string]: unknown;
}

export interface ResFrame extends Frame {
  type: "res";
  id: string;
  ok: boolean;
}

export interface EventFrame extends Frame {
  type: "event";
  event: string;
}

export interface CloseInfo {
  code: number;
  reason: string;
}

export const echoMethods: MethodTable = {
  "test.echo": defineMethod({
    scope: "operator.read",
    params: z.object({ text: z.string() }),
    handler: async (params) => ({ echoed: params.text }),
  }),
  "test.write": defineMethod({
    scope: "operator.write",
    params: z.object({}),
    handler: async () => ({ wrote: true }),
  }),
};

export async function startServer(overrides: Partial<ProtocolServerOptions> = {}): Promise<ProtocolServer> {
  const server = await startProtocolServer({
    host: "127.0.0.1",
    port: 0,
    auth: { mode: "token", token: TOKEN },
    methods: echoMethods,
    events: ["connect.challenge", "chat", "agent", "tick", "shutdown"],
    serverVersion: "0.0.0-test",
    snapshot: () => ({ sessionDefaults: { defaultAgentId: "main", mainKey: "main", mainSessionKey: "agent:main:main" } }),
    ...overrides,
    limits: { tickIntervalMs: 60_000, pingIntervalMs: 60_000, ...overrides.limits },
  });
  onTestFinished(() => server.close());
  return server;
}

export interface TestClient {
  readonly ws: WebSocket;
  /** Every frame received so far, in order (including those already taken by next()). */
  readonly received: Frame[];
  readonly closed: Promise<CloseInfo>;
  /** Takes the first queued (or next arriving) frame that matches. */
  next(match?: (frame: Frame) => boolean, timeoutMs?: number): Promise<Frame>;
  nextEvent(event: string, timeoutMs?: number): Promise<EventFrame>;
  sendJson(value: unknown): void;
  request(method: string, params?: unknown, id?: string): Promise<ResFrame>;
}

let idCounter = 0;

export async function openClient(url: string, options: ClientOptions = {}): Promise<TestClient> {
  const ws = new WebSocket(url, options);
  const received: Frame[] = [];
  const queue: Frame[] = [];
  const waiters: { match: (frame: Frame) => boolean; resolve: (frame: Frame) => void }[] = [];
  const closed = new Promise<CloseInfo>((resolve) => {
    ws.on("close", (code, reason) => resolve({ code, reason: reason.toString("utf8") }));
  });
  ws.on("error", () => undefined);
  ws.on("message", (data) => {
    const frame = JSON.parse(String(data)) as Frame;
    received.push(frame);
    const index = waiters.findIndex((waiter) => waiter.match(frame));
    if (index >= 0) {
      const [waiter] = waiters.splice(index, 1);
      waiter?.resolve(frame);
    } else {
      queue.push(frame);
    }
  });
  onTestFinished(() => {
    if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
  });
  await new Promise<void>((resolve, reject) => {
    ws.once("open", () => resolve());
    ws.once("error", reject);
  });

  function next(match: (frame: Frame) => boolean = () => true, timeoutMs = HANG_MS): Promise<Frame> {
    const index = queue.findIndex(match);
    if (index >= 0) return Promise.resolve(queue.splice(index, 1)[0] as Frame);
    return new Promise<Frame>((resolve, reject) => {
      const waiter = {
        match,
        resolve: (frame: Frame) => {
          clearTimeout(timer);
          resolve(frame);
        },
      };
      const timer = setTimeout(() => {
        waiters.splice(waiters.indexOf(waiter), 1);
        reject(new Error(`no matching frame within ${timeoutMs} ms; received: ${JSON.stringify(received)}`));
      }, timeoutMs);
      waiters.push(waiter);
    });
  }

  return {
    ws,
    received,
    closed,
    next,
    nextEvent: async (event, timeoutMs) => (await next((frame) => frame.type === "event" && frame.event === event, timeoutMs)) as EventFrame,
    sendJson: (value) => ws.send(JSON.stringify(value)),
    async request(method, params, id = `req-${++idCounter}`) {
      const frame: Record<string, unknown> = { type: "req", id, method };
      if (params !== undefined) frame.params = params;
      ws.send(JSON.stringify(frame));
      return (await next((f) => f.type === "res" && f.id === id)) as ResFrame;
    },
  };
}

export function connectParams(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    minProtocol: 4,
    maxProtocol: 4,
    client: { id: "gateway-client", version: "1.0.0", platform: "linux", mode: "backend" },
    role: "operator",
    auth: { token: TOKEN },
    ...overrides,
  };
}

/** Opens a socket, waits for the challenge, connects; fails the test unless hello-ok comes back. */
export async function connectClient(
  url: string,
  overrides: Record<string, unknown> = {},
  clientOptions: ClientOptions = {},
): Promise<{ client: TestClient; hello: Record<string, unknown> }> {
  const client = await openClient(url, clientOptions);
  await client.nextEvent("connect.challenge");
  const res = await client.request("connect", connectParams(overrides));
  if (!res.ok) throw new Error(`connect failed: ${JSON.stringify(res.error)}`);
  return { client, hello: res.payload as Record<string, unknown> };
}

/** Sends the given first request after the challenge; returns its response and the close. */
export async function failedConnect(url: string, params: unknown): Promise<{ res: ResFrame; close: CloseInfo }> {
  const client = await openClient(url);
  await client.nextEvent("connect.challenge");
  const res = await client.request("connect", params);
  const close = await withTimeout(client.closed, "socket close");
  return { res, close };
}

export async function withTimeout<T>(promise: Promise<T>, what: string, timeoutMs = HANG_MS): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Polls `condition` until it holds; fails after HANG_MS (for state the server updates asynchronously). */
export async function waitFor(condition: () => boolean, what: string): Promise<void> {
  const deadline = Date.now() + HANG_MS;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${HANG_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
