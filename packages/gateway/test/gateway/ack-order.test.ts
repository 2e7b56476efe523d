/**
 * The order a client sees on its socket: the reply that acknowledges a run (`chat.send`'s
 * `started`, `agent`'s `accepted`) comes before every `chat` and `agent` event of that run, for
 * the real methods under bursts. (The ordering rule itself, for a handler that replies late, is
 * pinned down in test/runs/ack-gate.test.ts; this suite fails if runs start before their ack.)
 */
import { describe, expect, it } from "vitest";
import { waitFor } from "../protocol/helpers.ts";
import type { Frame, TestClient } from "../protocol/helpers.ts";
import { burst, connect, startTestGateway } from "./harness.ts";

const TERMINAL = new Set(["final", "aborted", "error"]);

function runIdOf(frame: Frame): string | undefined {
  const runId = (frame.payload as { runId?: unknown } | undefined)?.runId;
  return frame.type === "event" && typeof runId === "string" ? runId : undefined;
}

function isTerminal(frame: Frame, runId: string): boolean {
  return frame.event === "chat" && runIdOf(frame) === runId && TERMINAL.has((frame.payload as { state: string }).state);
}

/** For each run: the index of the first reply to its request, and of its first event. */
function firstIndexes(client: TestClient, requests: ReadonlyMap<string, string>): { runId: string; reply: number; event: number }[] {
  return [...requests].map(([requestId, runId]) => ({
    runId,
    reply: client.received.findIndex((frame) => frame.type === "res" && frame.id === requestId),
    event: client.received.findIndex((frame) => runIdOf(frame) === runId),
  }));
}

describe("ack before events", () => {
  it("regression (defect 8, an event before its ack): chat.send and agent bursts on bare keys of one existing session, idleTtlMs 0", async () => {
    const t = await startTestGateway({ idleTtlMs: 0 });
    const client = await connect(t.url);
    const first = await client.request("chat.send", { sessionKey: "Topic", message: "hello", idempotencyKey: "seed" });
    expect(first.payload).toEqual({ runId: "seed", status: "started" });
    await client.next((frame) => isTerminal(frame, "seed"));

    // Every key below is the same session, agent:main:topic. Even rounds send six turns in one
    // chunk to the idle session: the first starts at once, the others queue behind it. Odd rounds
    // first start a slow run, then send six turns that queue behind it and, in the same chunk,
    // the abort that ends it: the queued runs start from inside that chunk's handling.
    const keys = ["Topic", "TOPIC", " topic ", "agent:main:topic", "AGENT:MAIN:Topic"];
    const requests = new Map<string, string>();
    const ended = (runIds: readonly string[]) => () => runIds.every((runId) => client.received.some((frame) => isTerminal(frame, runId)));
    for (let round = 0; round < 8; round += 1) {
      const slow = `slow-${round}`;
      if (round % 2 === 1) {
        const started = await client.request("chat.send", { sessionKey: keys[round % keys.length], message: "/echo:sleep 60000 zz", idempotencyKey: slow });
        expect(started.ok).toBe(true);
        await client.next((frame) => frame.event === "agent" && runIdOf(frame) === slow);
      }
      const frames: Record<string, unknown>[] = [];
      const runIds: string[] = [];
      for (let i = 0; i < 6; i += 1) {
        const runId = `r${round}-${i}`;
        const method = i % 2 === 0 ? "chat.send" : "agent";
        const params = { sessionKey: keys[(round + i) % keys.length], message: `turn ${i}`, idempotencyKey: runId };
        requests.set(`q-${runId}`, runId);
        runIds.push(runId);
        frames.push({ type: "req", id: `q-${runId}`, method, params });
        if (round % 2 === 1 && i === 2) frames.push({ type: "req", id: `abort-${round}`, method: "chat.abort", params: { sessionKey: "topic", runId: slow } });
      }
      burst(client.ws, frames);
      await waitFor(ended(runIds), `the terminal chat events of round ${round}`);
    }

    const order = firstIndexes(client, requests);
    for (const { runId, reply, event } of order) {
      expect(reply, `${runId}: its reply`).toBeGreaterThanOrEqual(0);
      expect(event, `${runId}: its first event`).toBeGreaterThan(reply);
    }
    const ack = client.received.find((frame) => frame.type === "res" && frame.id === "q-r0-1");
    expect(ack?.payload).toMatchObject({ status: "accepted", sessionKey: "agent:main:topic" });
  });
});
