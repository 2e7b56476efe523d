/**
 * Admission in memory, written at the group's commit (issue 14, acks first): the turns of one
 * socket read are acknowledged before any of their rows is written (store.later); what a later
 * turn of the same read needs from an earlier one (its new session, its runId) comes from memory,
 * and anything else that reads the store in that read sees the rows.
 */
import { describe, expect, it, onTestFinished } from "vitest";
import { WebSocket } from "ws";
import type { Frame, TestClient } from "../protocol/helpers.ts";
import { burst, connect, startTestGateway } from "./harness.ts";

function isEnd(runId: string): (frame: Frame) => boolean {
  return (frame) => frame.event === "chat" && (frame.payload as { runId?: string }).runId === runId && ["final", "error", "aborted"].includes((frame.payload as { state: string }).state);
}

function send(id: string, params: Record<string, unknown>): Record<string, unknown> {
  return { type: "req", id, method: "chat.send", params };
}

async function reply(client: TestClient, id: string): Promise<Frame> {
  return client.next((frame) => frame.type === "res" && frame.id === id);
}

describe("admission written at the group's commit", () => {
  it("writes every ack of a read before the first run row of that read (regression: each admission's INSERTs ran before the next frame's ack)", async () => {
    const t = await startTestGateway({ idleTtlMs: 0 });
    const client = await connect(t.url);
    const order: string[] = [];
    const wsSend = WebSocket.prototype.send;
    onTestFinished(() => void (WebSocket.prototype.send = wsSend));
    WebSocket.prototype.send = function (this: WebSocket, data: unknown, ...rest: unknown[]) {
      const match = typeof data === "string" && data.includes('"type":"res"') ? /"id":"ack-(\d+)"/.exec(data) : null;
      if (match !== null) order.push(`ack ${match[1]}`);
      return (wsSend as (...args: unknown[]) => void).call(this, data, ...rest);
    } as typeof wsSend;
    const store = t.gateway.store;
    const insertRun = store.insertRun.bind(store);
    store.insertRun = (run) => (order.push(`insert ${run.runId.slice(4)}`), insertRun(run));
    const frames = [1, 2, 3, 4, 5].map((n) => send(`ack-${n}`, { sessionKey: `later-${n}`, message: "hi", idempotencyKey: `run-${n}` }));
    burst(client.ws, frames);
    for (let n = 1; n <= 5; n += 1) await client.next(isEnd(`run-${n}`));
    expect(order).toEqual(["ack 1", "ack 2", "ack 3", "ack 4", "ack 5", "insert 1", "insert 2", "insert 3", "insert 4", "insert 5"]);
  });

  it("two turns on one new key in one read: one session, both runs, the transcript, one sessions.changed create", async () => {
    const t = await startTestGateway({ idleTtlMs: 0 });
    const client = await connect(t.url);
    await client.request("sessions.subscribe", {});
    burst(client.ws, [send("a", { sessionKey: "twice", message: "one", idempotencyKey: "r-one" }), send("b", { sessionKey: "twice", message: "two", idempotencyKey: "r-two" })]);
    expect((await reply(client, "a")).payload).toEqual({ runId: "r-one", status: "started" });
    expect((await reply(client, "b")).payload).toEqual({ runId: "r-two", status: "started" });
    await client.next(isEnd("r-two"));
    const creates = client.received.filter((frame) => frame.event === "sessions.changed" && (frame.payload as { reason?: string }).reason === "create");
    expect(creates).toHaveLength(1);
    expect(t.gateway.store.listSessions().rows.map((row) => row.key)).toEqual(["agent:main:twice"]);
    const transcript = t.gateway.store.listMessages("agent:main:twice").messages.map((m) => `${m.role}:${m.runId}`);
    // Both user turns are stored at admission; each reply when its run ends.
    expect(transcript).toEqual(["user:r-one", "user:r-two", "assistant:r-one", "assistant:r-two"]);
  });

  it("a session made by a turn carries that turn's time as its last interaction, written with the row", async () => {
    const t = await startTestGateway({ idleTtlMs: 0 });
    const client = await connect(t.url);
    const before = Date.now();
    const ack = await client.request("chat.send", { sessionKey: "fresh", message: "hi", idempotencyKey: "r-fresh" });
    expect(ack.ok).toBe(true);
    const row = t.gateway.store.getSession("agent:main:fresh");
    expect(row?.lastInteractionAt).toBeGreaterThanOrEqual(before);
    expect(row?.lastInteractionAt).toBeLessThanOrEqual(t.gateway.store.getRun("r-fresh")?.startedAt ?? 0);
    await client.next(isEnd("r-fresh"));
  });

  it("one idempotencyKey twice in one read: the second is in_flight, and the run is recorded and run once", async () => {
    const t = await startTestGateway({ idleTtlMs: 0 });
    const client = await connect(t.url);
    const params = { sessionKey: "dup", message: "same", idempotencyKey: "r-dup" };
    burst(client.ws, [send("a", params), send("b", params)]);
    expect((await reply(client, "a")).payload).toEqual({ runId: "r-dup", status: "started" });
    expect((await reply(client, "b")).payload).toEqual({ runId: "r-dup", status: "in_flight" });
    await client.next(isEnd("r-dup"));
    expect(t.gateway.store.listMessages("agent:main:dup").messages.map((m) => m.role)).toEqual(["user", "assistant"]);
    expect(client.received.filter(isEnd("r-dup"))).toHaveLength(1);
  });

  it("a read of the store later in the same read sees the admitted session (sessions.list after chat.send)", async () => {
    const t = await startTestGateway({ idleTtlMs: 0 });
    const client = await connect(t.url);
    burst(client.ws, [send("a", { sessionKey: "seen", message: "hi", idempotencyKey: "r-seen" }), { type: "req", id: "list", method: "sessions.list", params: {} }]);
    const list = await reply(client, "list");
    expect((list.payload as { sessions: { key: string }[] }).sessions.map((row) => row.key)).toContain("agent:main:seen");
    await client.next(isEnd("r-seen"));
  });
});
