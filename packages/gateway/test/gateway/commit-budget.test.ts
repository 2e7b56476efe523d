/**
 * SQLite commits per one-shot implicit session (issue 14's budget): a fresh key through
 * `chat.send` with `idleTtlMs` 0 — session created, run admitted, workspace acquired, the run,
 * its end recorded and the workspace released — counted by the store's commit counter as
 * `health` reports it. Each commit is a WAL append the disk must take, so this is the per-session
 * write cost; the test fails when a change adds one.
 */
import { describe, expect, it } from "vitest";
import type { Frame, TestClient } from "../protocol/helpers.ts";
import { burst, connect, startTestGateway } from "./harness.ts";

async function commits(client: TestClient): Promise<number> {
  const health = await client.request("health", {});
  return (health.payload as { store: { commits: number } }).store.commits;
}

async function oneShot(client: TestClient, n: number): Promise<void> {
  const runId = `budget-${n}`;
  const ack = await client.request("chat.send", { sessionKey: `budget-key-${n}`, message: "hi", idempotencyKey: runId });
  expect(ack.payload).toEqual({ runId, status: "started" });
  await client.next(isFinal(runId));
}

function isFinal(runId: string): (frame: Frame) => boolean {
  return (frame) => frame.event === "chat" && (frame.payload as { runId?: string }).runId === runId && (frame.payload as { state?: string }).state === "final";
}

/** A gateway (idleTtlMs 0) warmed by one session, a client, and the commit count after it. */
async function warmGateway(): Promise<{ client: TestClient; before: number }> {
  const t = await startTestGateway({ idleTtlMs: 0 });
  const client = await connect(t.url);
  await oneShot(client, 0);
  return { client, before: await commits(client) };
}

describe("commit budget", () => {
  it("a one-shot implicit session (create, run, release) costs at most 3 SQLite commits: admission, the lease row before its directory, the run's end (was 9, then 6)", async () => {
    const { client, before } = await warmGateway();
    const sessions = 5;
    for (let n = 1; n <= sessions; n += 1) await oneShot(client, n);
    const perSession = ((await commits(client)) - before) / sessions;
    expect(perSession).toBeLessThanOrEqual(3);
  });

  it("a burst of 40 one-shot sessions written in one go shares its admission commits: at most 2.2 a session (was 6, then 5.0)", async () => {
    const { client, before } = await warmGateway();
    const sessions = 40;
    const runIds = Array.from({ length: sessions }, (_, n) => `burst-${n}`);
    burst(
      client.ws,
      runIds.map((runId) => ({ type: "req", id: `req-${runId}`, method: "chat.send", params: { sessionKey: `key-${runId}`, message: "hi", idempotencyKey: runId } })),
    );
    for (const runId of runIds) await client.next(isFinal(runId));
    const acks = client.received.filter((frame) => frame.type === "res" && String(frame.id).startsWith("req-burst-"));
    expect(acks.map((frame) => frame.ok)).toEqual(runIds.map(() => true));
    const perSession = ((await commits(client)) - before) / sessions;
    expect(perSession).toBeLessThanOrEqual(2.2);
  });
});
