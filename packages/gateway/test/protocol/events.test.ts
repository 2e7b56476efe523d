import { createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { z } from "zod";
import { defineMethod } from "../../src/protocol/index.ts";
import { connectClient, openClient, startServer, waitFor, withTimeout } from "./helpers.ts";
import type { EventFrame } from "./helpers.ts";

async function listenOn(port: number): Promise<void> {
  const probe = createServer();
  await new Promise<void>((resolve, reject) => {
    probe.once("error", reject);
    probe.listen(port, "127.0.0.1", () => resolve());
  });
  await new Promise<void>((resolve) => probe.close(() => resolve()));
}

describe("events", () => {
  it("numbers events per socket from 1, independently between sockets", async () => {
    const server = await startServer();
    const { client: a, hello: helloA } = await connectClient(server.url);
    server.broadcast("chat", { n: 1 });
    server.broadcast("chat", { n: 2 });
    const { client: b } = await connectClient(server.url);
    server.broadcast("chat", { n: 3 });
    expect(server.send((helloA.server as { connId: string }).connId, "agent", { n: 4 })).toBe(true);
    server.broadcast("tick", { ts: 1 });

    const fromA: EventFrame[] = [];
    for (let i = 0; i < 5; i++) fromA.push((await a.next((frame) => frame.type === "event" && frame.event !== "connect.challenge")) as EventFrame);
    expect(fromA.map((frame) => [frame.event, frame.seq, frame.payload])).toEqual([
      ["chat", 1, { n: 1 }],
      ["chat", 2, { n: 2 }],
      ["chat", 3, { n: 3 }],
      ["agent", 4, { n: 4 }],
      ["tick", 5, { ts: 1 }],
    ]);

    const fromB: EventFrame[] = [];
    for (let i = 0; i < 2; i++) fromB.push((await b.next((frame) => frame.type === "event" && frame.event !== "connect.challenge")) as EventFrame);
    expect(fromB.map((frame) => [frame.event, frame.seq])).toEqual([
      ["chat", 1],
      ["tick", 2],
    ]);
  });

  it("does not send events to a socket that has not completed the handshake", async () => {
    const server = await startServer();
    const pending = await openClient(server.url);
    await pending.nextEvent("connect.challenge");
    const { client } = await connectClient(server.url);
    server.broadcast("tick", { ts: 2 });
    await client.nextEvent("tick");
    await client.request("test.echo", { text: "barrier" });
    expect(pending.received.map((frame) => frame.event)).toEqual(["connect.challenge"]);
    expect(server.send("no-such-conn", "tick", {})).toBe(false);
  });

  it("gates broadcasts by scope: no read scope gets no chat but still gets tick", async () => {
    const server = await startServer();
    const { client: reader } = await connectClient(server.url, { scopes: ["operator.read"] });
    const { client: writer } = await connectClient(server.url, { scopes: ["operator.write"] });
    const { client: none } = await connectClient(server.url, { scopes: [] });
    server.broadcast("chat", { runId: "r" });
    server.broadcast("admin.thing", { secret: true }, { scope: "operator.admin" });
    server.broadcast("tick", { ts: 3 });

    expect((await reader.nextEvent("chat")).seq).toBe(1);
    expect((await writer.nextEvent("chat")).seq).toBe(1);
    const tick = await none.nextEvent("tick");
    expect(tick.seq).toBe(1);
    for (const client of [reader, writer, none]) await client.request("test.echo", { text: "barrier" }).catch(() => undefined);
    expect(none.received.some((frame) => frame.event === "chat")).toBe(false);
    expect([reader, writer, none].some((client) => client.received.some((frame) => frame.event === "admin.thing"))).toBe(false);
  });

  it("applies a broadcast filter per connection", async () => {
    const server = await startServer();
    const { client: a, hello } = await connectClient(server.url);
    const { client: b } = await connectClient(server.url);
    const connIdA = (hello.server as { connId: string }).connId;
    server.broadcast("chat", { only: "a" }, { filter: (conn) => conn.connId === connIdA });
    server.broadcast("chat", { all: true });
    expect((await a.nextEvent("chat")).payload).toEqual({ only: "a" });
    const firstForB = await b.nextEvent("chat");
    expect(firstForB).toMatchObject({ payload: { all: true }, seq: 1 });
  });

  it("sends tick {ts} every tickIntervalMs to authenticated sockets", async () => {
    const server = await startServer({ limits: { tickIntervalMs: 50 } });
    const { client, hello } = await connectClient(server.url);
    expect((hello.policy as { tickIntervalMs: number }).tickIntervalMs).toBe(50);
    const first = await client.nextEvent("tick");
    const second = await client.nextEvent("tick");
    expect(typeof (first.payload as { ts: unknown }).ts).toBe("number");
    expect(second.seq).toBe((first.seq ?? 0) + 1);
  });

  it("terminates a socket that does not answer pings", async () => {
    const server = await startServer({ limits: { pingIntervalMs: 50 } });
    const { client: silent } = await connectClient(server.url, {}, { autoPong: false });
    const { client: healthy } = await connectClient(server.url);
    const close = await withTimeout(silent.closed, "terminate");
    expect(close.code).toBe(1006);
    await waitFor(() => server.connections().length === 1, "server drops the silent connection");
    expect((await healthy.request("test.echo", { text: "alive" })).ok).toBe(true);
  });

  it("closes a slow consumer 1008", async () => {
    const server = await startServer({ limits: { maxBufferedBytes: 64 * 1024 } });
    const { client } = await connectClient(server.url);
    // Stop reading so the server's outbound buffer grows, then push more than the kernel buffers hold.
    const socket = (client.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
    socket.pause();
    const chunk = "z".repeat(1024 * 1024);
    for (let i = 0; i < 64 && server.connections().length > 0; i++) server.broadcast("tick", { chunk });
    expect(server.connections()).toHaveLength(0);
    socket.resume();
    const close = await withTimeout(client.closed, "slow consumer close");
    expect(close).toEqual({ code: 1008, reason: "slow consumer" });
  });
});

describe("close", () => {
  it("sends shutdown, closes 1012, is idempotent and releases the port", async () => {
    const server = await startServer();
    const { client: a } = await connectClient(server.url, { scopes: [] });
    const { client: b } = await connectClient(server.url);
    const pending = await openClient(server.url);
    await pending.nextEvent("connect.challenge");

    const first = server.close({ reason: "update", restartExpectedMs: 5000 });
    const second = server.close();
    await withTimeout(Promise.all([first, second]), "close");
    expect(second).toBe(first);

    for (const client of [a, b]) {
      const shutdown = client.received.find((frame) => frame.event === "shutdown");
      expect(shutdown).toMatchObject({ type: "event", event: "shutdown", seq: 1, payload: { reason: "update", restartExpectedMs: 5000 } });
      expect(await client.closed).toEqual({ code: 1012, reason: "service restart" });
    }
    expect(pending.received.some((frame) => frame.event === "shutdown")).toBe(false);
    expect((await pending.closed).code).toBe(1012);
    expect(server.connections()).toEqual([]);
    await listenOn(server.port);
    await server.close();
  });

  it("omits restartExpectedMs when not given", async () => {
    const server = await startServer();
    const { client } = await connectClient(server.url);
    await server.close();
    expect(client.received.find((frame) => frame.event === "shutdown")?.payload).toEqual({ reason: "gateway stopping" });
  });

  it("resolves while a handler is still running, aborting its signal", async () => {
    let aborted = false;
    let started: () => void = () => undefined;
    const handlerStarted = new Promise<void>((resolve) => {
      started = resolve;
    });
    const server = await startServer({
      methods: {
        hang: defineMethod({
          scope: "operator.read",
          params: z.object({}),
          handler: async (_params, ctx) => {
            started();
            await new Promise((resolve) => ctx.signal.addEventListener("abort", resolve));
            aborted = true;
            return { late: true };
          },
        }),
      },
    });
    const { client } = await connectClient(server.url);
    client.sendJson({ type: "req", id: "h", method: "hang", params: {} });
    await withTimeout(handlerStarted, "handler start");
    await withTimeout(server.close(), "server close");
    expect((await client.closed).code).toBe(1012);
    expect(aborted).toBe(true);
    expect(client.received.some((frame) => frame.type === "res" && frame.id === "h")).toBe(false);
  });

  it("rejects a listen error instead of crashing", async () => {
    const server = await startServer();
    await expect(startServer({ port: server.port })).rejects.toThrow(/EADDRINUSE/);
  });
});
