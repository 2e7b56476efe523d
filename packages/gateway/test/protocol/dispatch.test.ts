import { Socket } from "node:net";
import { WebSocket } from "ws";
import { describe, expect, it, onTestFinished } from "vitest";
import { z } from "zod";
import { GatewayError } from "../../src/errors.ts";
import { defineMethod, failureReply } from "../../src/protocol/index.ts";
import type { MethodContext, MethodTable } from "../../src/protocol/index.ts";
import { connectClient, startServer, withTimeout } from "./helpers.ts";

function deferred<T>(): { promise: Promise<T>; resolve: (value: T) => void } {
  let resolve: (value: T) => void = () => undefined;
  const promise = new Promise<T>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

const sendSchema = z.object({
  sessionKey: z.string(),
  message: z.string(),
  idempotencyKey: z.string(),
  options: z.object({ retries: z.int().nonnegative(), tags: z.array(z.string()) }).optional(),
});

const methods: MethodTable = {
  "test.read": defineMethod({ scope: "operator.read", params: z.object({}), handler: async () => ({ read: true }) }),
  "test.write": defineMethod({ scope: "operator.write", params: z.object({}), handler: async () => ({ wrote: true }) }),
  "test.admin": defineMethod({ scope: "operator.admin", params: z.object({}), handler: async () => ({ admin: true }) }),
  "test.send": defineMethod({ scope: "operator.write", params: sendSchema, handler: async (params) => ({ runId: params.idempotencyKey }) }),
  "test.delete": defineMethod({
    scope: (params) => (params.archivedOnly === true ? "operator.write" : "operator.admin"),
    params: z.object({ key: z.string(), archivedOnly: z.boolean().optional() }),
    handler: async (params) => ({ deleted: params.key }),
  }),
  "test.params": defineMethod({ scope: "operator.read", params: z.looseObject({}), handler: async (params) => ({ params }) }),
  "test.throws": defineMethod({
    scope: "operator.read",
    params: z.object({}),
    handler: async () => {
      throw new GatewayError("SESSION_NOT_FOUND", "session not found: agent:main:x", { details: { key: "agent:main:x" } });
    },
  }),
  "test.crash": defineMethod({
    scope: "operator.read",
    params: z.object({}),
    handler: async () => {
      throw new Error("secret internal detail");
    },
  }),
  "test.cycle": defineMethod({
    scope: "operator.read",
    params: z.object({}),
    handler: async () => {
      const cyclic: Record<string, unknown> = {};
      cyclic.self = cyclic;
      return cyclic;
    },
  }),
  "test.failure": defineMethod({
    scope: "operator.write",
    params: z.object({ runId: z.string() }),
    handler: async (params) =>
      failureReply(
        { runId: params.runId, status: "error", summary: "runner exited 1" },
        new GatewayError("RUNNER_FAILED", "runner exited 1", { fix: null, details: { runId: params.runId } }),
      ),
  }),
};

/**
 * The writes the gateway's side of `client`'s connection hands to the kernel from now on
 * (net.Socket's _write/_writev): one entry per call, the number of buffers it carried.
 */
function countServerWrites(client: { ws: WebSocket }): number[] {
  const clientSocket = (client.ws as unknown as { _socket: Socket })._socket;
  const writes: number[] = [];
  const proto = Socket.prototype as unknown as Record<"_write" | "_writev", (...args: unknown[]) => unknown>;
  const original = { _write: proto._write, _writev: proto._writev };
  onTestFinished(() => void Object.assign(proto, original));
  for (const name of ["_write", "_writev"] as const) {
    proto[name] = function (this: Socket, ...args: unknown[]) {
      if (this.remotePort === clientSocket.localPort) writes.push(name === "_writev" ? (args[0] as unknown[]).length : 1);
      return original[name].apply(this, args);
    };
  }
  return writes;
}

describe("dispatch", () => {
  it("writes a synchronous handler's response before it handles the next frame of the same read (acks first)", async () => {
    const order: string[] = [];
    const admit = defineMethod({ scope: "operator.write", params: z.object({ n: z.int() }), handler: (params: { n: number }) => (order.push(`handle ${params.n}`), { n: params.n }) });
    const server = await startServer({ methods: { ...methods, "test.admit": admit } });
    const { client } = await connectClient(server.url);
    // Every frame the gateway writes goes through ws's WebSocket#send: log the responses.
    const send = WebSocket.prototype.send;
    onTestFinished(() => void (WebSocket.prototype.send = send));
    WebSocket.prototype.send = function (this: WebSocket, data: unknown, ...rest: unknown[]) {
      const text = typeof data === "string" ? data : "";
      const match = /"id":"admit-(\d+)"/.exec(text);
      if (match !== null && text.includes('"type":"res"')) order.push(`sent ${match[1]}`);
      return (send as (...args: unknown[]) => void).call(this, data, ...rest);
    } as typeof send;
    const socket = (client.ws as unknown as { _socket: { cork(): void; uncork(): void } })._socket;
    socket.cork();
    for (let n = 1; n <= 3; n += 1) (send as (data: string) => void).call(client.ws, JSON.stringify({ type: "req", id: `admit-${n}`, method: "test.admit", params: { n } }));
    socket.uncork();
    for (let n = 1; n <= 3; n += 1) await client.next((frame) => frame.type === "res" && frame.id === `admit-${n}`);
    expect(order).toEqual(["handle 1", "sent 1", "handle 2", "sent 2", "handle 3", "sent 3"]);
  });

  it("hands the replies to one socket read to the kernel in one write, not one write per reply", async () => {
    const admit = defineMethod({ scope: "operator.write", params: z.object({ n: z.int() }), handler: (params: { n: number }) => ({ n: params.n }) });
    const server = await startServer({ methods: { ...methods, "test.admit": admit } });
    const { client } = await connectClient(server.url);
    const writes = countServerWrites(client);
    const clientSocket = (client.ws as unknown as { _socket: Socket })._socket;
    clientSocket.cork();
    for (let n = 1; n <= 20; n += 1) client.sendJson({ type: "req", id: `admit-${n}`, method: "test.admit", params: { n } });
    clientSocket.uncork();
    for (let n = 1; n <= 20; n += 1) await client.next((frame) => frame.type === "res" && frame.id === `admit-${n}`);
    // One read of 20 frames (sent in one write) → its 20 replies in one writev (ws hands over each
    // frame as header + payload: 40 buffers). Uncorked, each reply was a writev of its own.
    expect(writes).toEqual([40]);
  });

  it("hands the events written in one tick to the kernel in one write (a run's end: its lifecycle end and its final)", async () => {
    const server = await startServer({ methods });
    const { client } = await connectClient(server.url);
    const writes = countServerWrites(client);
    await new Promise((resolve) => setImmediate(resolve));
    for (let n = 1; n <= 5; n += 1) server.broadcast("tick", { n });
    for (let n = 1; n <= 5; n += 1) await client.next((frame) => frame.type === "event" && frame.event === "tick" && (frame.payload as { n: number }).n === n);
    expect(writes).toEqual([10]);
  });

  it("runs a method and echoes the request id", async () => {
    const server = await startServer({ methods });
    const { client } = await connectClient(server.url);
    const res = await client.request("test.read", undefined, "1:abc");
    expect(res).toEqual({ type: "res", id: "1:abc", ok: true, payload: { read: true } });
  });

  it("hands absent params to the schema as {}", async () => {
    const server = await startServer({ methods });
    const { client } = await connectClient(server.url);
    const res = await client.request("test.params");
    expect(res.payload).toEqual({ params: {} });
  });

  it("answers an unknown method with upstream's message", async () => {
    const server = await startServer({ methods });
    const { client } = await connectClient(server.url);
    const res = await client.request("no.such.method", {});
    expect(res.ok).toBe(false);
    expect(res.error).toMatchObject({ code: "INVALID_REQUEST", message: "unknown method: no.such.method" });
  });

  it("does not treat Object.prototype names as methods", async () => {
    const server = await startServer({ methods });
    const { client } = await connectClient(server.url);
    const res = await client.request("toString", {});
    expect(res.error).toMatchObject({ code: "INVALID_REQUEST", message: "unknown method: toString" });
  });

  it("refuses a write method on a read-only connection with FORBIDDEN missing scope", async () => {
    const server = await startServer({ methods });
    const { client } = await connectClient(server.url, { scopes: ["operator.read"] });
    const res = await client.request("test.write", {});
    expect(res.ok).toBe(false);
    expect(res.error).toEqual({
      code: "FORBIDDEN",
      message: "missing scope: operator.write",
      details: { code: "MISSING_SCOPE", missingScope: "operator.write", requiredScopes: ["operator.write"] },
    });
  });

  it("checks the scope before validating params", async () => {
    const server = await startServer({ methods });
    const { client } = await connectClient(server.url, { scopes: ["operator.read"] });
    const res = await client.request("test.send", { bogus: 1 });
    expect(res.error?.message).toBe("missing scope: operator.write");
  });

  it("lets write imply read, and admin imply write and read", async () => {
    const server = await startServer({ methods });
    const { client: writer } = await connectClient(server.url, { scopes: ["operator.write"] });
    expect((await writer.request("test.read")).ok).toBe(true);
    expect((await writer.request("test.admin")).error?.message).toBe("missing scope: operator.admin");
    const { client: admin } = await connectClient(server.url, { scopes: ["operator.admin"] });
    expect(await admin.request("test.write")).toMatchObject({ ok: true, payload: { wrote: true } });
    expect(await admin.request("test.read")).toMatchObject({ ok: true, payload: { read: true } });
    expect(await admin.request("test.admin")).toMatchObject({ ok: true, payload: { admin: true } });
  });

  it("gives a connection with no scopes no method that needs one", async () => {
    const server = await startServer({ methods });
    const { client } = await connectClient(server.url, { scopes: [] });
    expect((await client.request("test.read")).error?.message).toBe("missing scope: operator.read");
  });

  it("computes a param-dependent scope", async () => {
    const server = await startServer({ methods });
    const { client } = await connectClient(server.url, { scopes: ["operator.write"] });
    expect(await client.request("test.delete", { key: "a", archivedOnly: true })).toMatchObject({ ok: true, payload: { deleted: "a" } });
    expect((await client.request("test.delete", { key: "a" })).error?.message).toBe("missing scope: operator.admin");
    // Invalid params: the scope function sees the raw params; still FORBIDDEN first.
    expect((await client.request("test.delete", { key: 5 })).error?.message).toBe("missing scope: operator.admin");
  });

  it("names a missing required field like upstream's ajv", async () => {
    const server = await startServer({ methods });
    const { client } = await connectClient(server.url);
    const res = await client.request("test.send", { sessionKey: "main", message: "hi" });
    expect(res.ok).toBe(false);
    expect(res.error).toMatchObject({ code: "INVALID_REQUEST", message: "invalid test.send params: must have required property 'idempotencyKey'" });
  });

  it("names a wrong type by JSON pointer and joins several issues", async () => {
    const server = await startServer({ methods });
    const { client } = await connectClient(server.url);
    const res = await client.request("test.send", { sessionKey: 42, message: "hi", idempotencyKey: "k", options: { retries: 1, tags: ["a", 3] } });
    expect(res.error?.message).toBe(
      "invalid test.send params: at /sessionKey: Invalid input: expected string, received number; at /options/tags/1: Invalid input: expected string, received number",
    );
    const nested = await client.request("test.send", { sessionKey: "s", message: "hi", idempotencyKey: "k", options: { tags: [] } });
    expect(nested.error?.message).toBe("invalid test.send params: at /options: must have required property 'retries'");
  });

  it("maps a thrown GatewayError through toWireError", async () => {
    const server = await startServer({ methods });
    const { client } = await connectClient(server.url);
    const res = await client.request("test.throws");
    expect(res.ok).toBe(false);
    expect(res.error?.code).toBe("INVALID_REQUEST");
    expect(res.error?.message).toMatch(/^session not found: agent:main:x\. /);
    expect(res.error?.details).toEqual({ code: "SESSION_NOT_FOUND", key: "agent:main:x" });
  });

  it("hides an unexpected error behind UNAVAILABLE internal error", async () => {
    const lines: string[] = [];
    const server = await startServer({ methods, log: (line) => lines.push(line) });
    const { client } = await connectClient(server.url);
    const res = await client.request("test.crash");
    expect(res.error).toEqual({ code: "UNAVAILABLE", message: "internal error", retryable: true });
    expect(lines.some((line) => line.includes("secret internal detail"))).toBe(true);
  });

  it("answers an unserialisable result with an error instead of dropping the response", async () => {
    const server = await startServer({ methods });
    const { client } = await connectClient(server.url);
    const res = await client.request("test.cycle");
    expect(res.ok).toBe(false);
    expect(res.error?.code).toBe("UNAVAILABLE");
  });

  it("answers a failureReply with ok:false, the payload and the error", async () => {
    const server = await startServer({ methods });
    const { client } = await connectClient(server.url);
    const res = await client.request("test.failure", { runId: "r1" });
    expect(res).toEqual({
      type: "res",
      id: res.id,
      ok: false,
      payload: { runId: "r1", status: "error", summary: "runner exited 1" },
      error: { code: "UNAVAILABLE", message: "runner exited 1", details: { code: "RUNNER_FAILED", runId: "r1" } },
    });
  });

  it("sends interim and final responses with the same id, in order, and ignores interim after the end", async () => {
    let lateCtx: MethodContext | undefined;
    const server = await startServer({
      methods: {
        agent: defineMethod({
          scope: "operator.write",
          params: z.looseObject({ idempotencyKey: z.string() }),
          handler: async (params, ctx) => {
            expect(ctx.requestId).toBe("run-1");
            ctx.interim({ runId: params.idempotencyKey, status: "accepted" });
            await new Promise((resolve) => setTimeout(resolve, 10));
            lateCtx = ctx;
            return { runId: params.idempotencyKey, status: "ok", summary: "completed" };
          },
        }),
        ping: defineMethod({ scope: "operator.read", params: z.object({}), handler: async () => ({ pong: true }) }),
      },
    });
    const { client } = await connectClient(server.url);
    client.sendJson({ type: "req", id: "run-1", method: "agent", params: { idempotencyKey: "run-1", message: "hi" } });
    const first = await client.next((frame) => frame.type === "res" && frame.id === "run-1");
    const second = await client.next((frame) => frame.type === "res" && frame.id === "run-1");
    expect(first).toMatchObject({ ok: true, payload: { runId: "run-1", status: "accepted" } });
    expect(second).toMatchObject({ ok: true, payload: { runId: "run-1", status: "ok", summary: "completed" } });
    lateCtx?.interim({ status: "too late" });
    await client.request("ping");
    expect(client.received.filter((frame) => frame.type === "res" && frame.id === "run-1")).toHaveLength(2);
  });

  it("settles acked right after the first reply is written: the interim, else the result or the error", async () => {
    const server = await startServer({
      methods: {
        // Each handler broadcasts an event once acked settles; the event must follow the reply.
        "test.two": defineMethod({
          scope: "operator.write",
          params: z.object({}),
          handler: async (_params, ctx) => {
            void ctx.acked.then(() => server.broadcast("chat", { runId: "two" }));
            await new Promise((resolve) => setImmediate(resolve));
            ctx.interim({ status: "accepted" });
            await new Promise((resolve) => setTimeout(resolve, 10));
            return { status: "ok" };
          },
        }),
        "test.one": defineMethod({
          scope: "operator.write",
          params: z.object({}),
          handler: async (_params, ctx) => {
            void ctx.acked.then(() => server.broadcast("chat", { runId: "one" }));
            await new Promise((resolve) => setImmediate(resolve));
            return { status: "started" };
          },
        }),
        "test.fails": defineMethod({
          scope: "operator.write",
          params: z.object({}),
          handler: async (_params, ctx) => {
            void ctx.acked.then(() => server.broadcast("chat", { runId: "fails" }));
            await new Promise((resolve) => setImmediate(resolve));
            throw new GatewayError("RUNNER_FAILED", "no");
          },
        }),
      },
    });
    const { client } = await connectClient(server.url);
    for (const method of ["test.two", "test.one", "test.fails"]) client.sendJson({ type: "req", id: method, method, params: {} });
    await client.next((frame) => frame.type === "res" && frame.id === "test.two" && (frame.payload as { status?: string } | undefined)?.status === "ok");
    await client.next((frame) => frame.type === "res" && frame.id === "test.fails");
    const replies = (id: string): number[] => client.received.flatMap((frame, i) => (frame.type === "res" && frame.id === id ? [i] : []));
    const event = (runId: string): number => client.received.findIndex((frame) => frame.event === "chat" && (frame.payload as { runId?: string }).runId === runId);
    expect(event("one")).toBeGreaterThan(replies("test.one")[0] as number);
    expect(event("fails")).toBeGreaterThan(replies("test.fails")[0] as number);
    // A two-reply method is acked by its interim: the event comes between the two replies.
    const [interim, final] = replies("test.two") as [number, number];
    expect(event("two")).toBeGreaterThan(interim);
    expect(event("two")).toBeLessThan(final);
  });

  it("runs requests concurrently; responses may come out of order", async () => {
    const gate = deferred<undefined>();
    const server = await startServer({
      methods: {
        slow: defineMethod({
          scope: "operator.read",
          params: z.object({}),
          handler: async () => {
            await gate.promise;
            return { slow: true };
          },
        }),
        fast: defineMethod({
          scope: "operator.read",
          params: z.object({}),
          handler: async () => {
            gate.resolve(undefined);
            return { fast: true };
          },
        }),
      },
    });
    const { client } = await connectClient(server.url);
    const slow = client.request("slow", {}, "s");
    const fast = client.request("fast", {}, "f");
    const [slowRes, fastRes] = await Promise.all([slow, fast]);
    expect(slowRes.payload).toEqual({ slow: true });
    expect(fastRes.payload).toEqual({ fast: true });
    const order = client.received.filter((frame) => frame.type === "res" && (frame.id === "s" || frame.id === "f")).map((frame) => frame.id);
    expect(order).toEqual(["f", "s"]);
  });

  it("aborts ctx.signal when the socket closes", async () => {
    const aborted = deferred<boolean>();
    const started = deferred<undefined>();
    const server = await startServer({
      methods: {
        wait: defineMethod({
          scope: "operator.read",
          params: z.object({}),
          handler: async (_params, ctx) => {
            ctx.signal.addEventListener("abort", () => aborted.resolve(true));
            started.resolve(undefined);
            await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
            return null;
          },
        }),
      },
    });
    const { client } = await connectClient(server.url);
    client.sendJson({ type: "req", id: "w", method: "wait", params: {} });
    await withTimeout(started.promise, "handler start");
    client.ws.close();
    expect(await withTimeout(aborted.promise, "abort")).toBe(true);
  });

  it("answers a malformed request frame that carries an id, and ignores one that does not", async () => {
    const server = await startServer({ methods });
    const { client } = await connectClient(server.url);
    client.sendJson({ type: "req", id: "bad", method: "" });
    const res = await client.next((frame) => frame.type === "res" && frame.id === "bad");
    expect(res.error?.code).toBe("INVALID_REQUEST");
    expect(res.error?.message).toMatch(/^invalid request frame: at \/method: /);
    client.ws.send("not json at all");
    client.sendJson({ type: "res", ok: true });
    expect((await client.request("test.read")).ok).toBe(true);
    // connect, "bad" and test.read: nothing answered the two frames without an id.
    expect(client.received.filter((frame) => frame.type === "res")).toHaveLength(3);
  });

  it("exposes per-connection data to handlers", async () => {
    const server = await startServer({
      methods: {
        remember: defineMethod({
          scope: "operator.read",
          params: z.object({ value: z.string() }),
          handler: async (params, ctx) => {
            const previous = ctx.conn.data.get("value");
            ctx.conn.data.set("value", params.value);
            return { previous: previous ?? null };
          },
        }),
      },
    });
    const { client: a } = await connectClient(server.url);
    const { client: b } = await connectClient(server.url);
    expect((await a.request("remember", { value: "a1" })).payload).toEqual({ previous: null });
    expect((await a.request("remember", { value: "a2" })).payload).toEqual({ previous: "a1" });
    expect((await b.request("remember", { value: "b1" })).payload).toEqual({ previous: null });
  });
});
