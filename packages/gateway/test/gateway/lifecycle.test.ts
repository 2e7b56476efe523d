/**
 * The one rule, end to end over real sockets, SQLite and directories: a session created
 * implicitly by chat.send gets a workspace that is released exactly once, whichever way the
 * session ends (run end, delete, reset, idle timeout, graceful shutdown).
 */
import { createHash } from "node:crypto";
import { existsSync, readdirSync, statSync } from "node:fs";
import * as path from "node:path";
import { slugKey } from "@ocgw/workspace";
import { describe, expect, it, onTestFinished } from "vitest";
import { startGateway } from "../../src/index.ts";
import {
  LONG_HANG_MS,
  call,
  chatEvents,
  chatSend,
  chatTurn,
  connectAdmin,
  gatewayConfig,
  leaseEntries,
  ledger,
  makeDirs,
  readLedger,
  startTestGateway,
  TERMINAL_STATES,
  waitForTerminals,
  waitUntil,
} from "./lifecycle-harness.ts";
import { withTimeout } from "../protocol/helpers.ts";

const ALL_RELEASED = (released: number): Record<string, number> => ({ acquiring: 0, live: 0, releasing: 0, released, failed: 0 });

interface SessionRow {
  key: string;
  sessionId: string;
  workspaceDir: string | null;
}

async function listSessions(client: Awaited<ReturnType<typeof connectAdmin>>): Promise<SessionRow[]> {
  return (await call<{ sessions: SessionRow[] }>(client, "sessions.list", { limit: 1000 })).sessions;
}

describe("one-shot sessions (idleTtlMs 0)", () => {
  it("leaves nothing behind after 500 implicit sessions on 500 fresh keys", async () => {
    const dirs = await makeDirs();
    const gateway = await startTestGateway({ ...dirs, idleTtlMs: 0 });
    const client = await connectAdmin(gateway.url);

    const acks = await Promise.all(Array.from({ length: 500 }, (_, i) => chatSend(client, `leak-${i}`, `hello ${i}`)));
    expect(acks.every((ack) => ack.status === "started")).toBe(true);
    const terminals = await waitForTerminals(
      client,
      acks.map((ack) => ack.runId),
    );
    expect([...terminals.values()].filter((event) => event.state !== "final")).toEqual([]);

    expect(await leaseEntries(dirs.root)).toEqual([]);
    expect(readdirSync(dirs.root).filter((name) => name.startsWith(".trash-"))).toEqual([]);
    expect(gateway.store.countLeases()).toEqual(ALL_RELEASED(500));
    const rows = ledger(gateway.store);
    expect(rows).toHaveLength(500);
    expect(new Set(rows.map((row) => row.sessionKey)).size).toBe(500);
    expect(new Set(rows.map((row) => row.path)).size).toBe(500);
    for (const row of rows) {
      expect(row).toMatchObject({ kind: "ephemeral", state: "released", releaseReason: "run-end", outcome: "removed", instanceId: gateway.instanceId });
      expect(path.dirname(row.path as string)).toBe(gateway.ephemeralRoot);
    }
  });

  it("releases every workspace whichever way the run ends: final, error, aborted, timeout", async () => {
    const dirs = await makeDirs();
    const gateway = await startTestGateway({ ...dirs, idleTtlMs: 0 });
    const client = await connectAdmin(gateway.url);

    const kinds = ["final", "error", "aborted", "timeout"] as const;
    const sends = Array.from({ length: 200 }, async (_, i) => {
      const kind = kinds[i % 4] as (typeof kinds)[number];
      const key = `mix-${i}`;
      if (kind === "final") return { kind, key, ack: await chatSend(client, key, `plain ${i}`) };
      if (kind === "error") return { kind, key, ack: await chatSend(client, key, "/echo:error boom") };
      if (kind === "timeout") return { kind, key, ack: await chatSend(client, key, "/echo:sleep 5000 x", { timeoutMs: 50 }) };
      const ack = await chatSend(client, key, "/echo:sleep 5000 x");
      const aborted = await call<{ aborted: boolean; runIds: string[] }>(client, "chat.abort", { sessionKey: key, runId: ack.runId });
      expect(aborted).toMatchObject({ aborted: true, runIds: [ack.runId] });
      return { kind, key, ack };
    });
    const sent = await Promise.all(sends);
    const terminals = await waitForTerminals(
      client,
      sent.map((entry) => entry.ack.runId),
    );

    for (const { kind, ack } of sent) {
      const event = terminals.get(ack.runId);
      if (kind === "final") expect(event?.state).toBe("final");
      if (kind === "error") expect(event).toMatchObject({ state: "error", errorMessage: "boom", errorCode: "RUNNER_FAILED" });
      if (kind === "aborted") expect(event?.state).toBe("aborted");
      if (kind === "timeout") expect(event).toMatchObject({ state: "error", errorKind: "timeout" });
    }

    expect(await leaseEntries(dirs.root)).toEqual([]);
    const rows = ledger(gateway.store);
    expect(rows.filter((row) => row.state !== "released")).toEqual([]);
    expect(rows.every((row) => row.outcome === "removed" && row.releaseReason === "run-end")).toBe(true);
    // Runs that reached the runner held a workspace; an abort may land before the acquire.
    const keysWithRows = new Set(rows.map((row) => row.sessionKey));
    for (const { kind, key } of sent) {
      const count = rows.filter((row) => row.sessionKey === `agent:main:${key}`).length;
      if (kind === "aborted") expect(count).toBeLessThanOrEqual(1);
      else expect(count, `lease rows of ${key}`).toBe(1);
    }
    expect(keysWithRows.size).toBe(rows.length);
    expect(gateway.store.countLeases()).toEqual(ALL_RELEASED(rows.length));
  });

  it("keeps the session and its transcript after the workspace is gone", async () => {
    const dirs = await makeDirs();
    const gateway = await startTestGateway({ ...dirs, idleTtlMs: 0 });
    const client = await connectAdmin(gateway.url);

    expect((await chatTurn(client, "twice", "first")).state).toBe("final");
    expect(await leaseEntries(dirs.root)).toEqual([]);
    expect((await chatTurn(client, "twice", "second")).state).toBe("final");
    expect(await leaseEntries(dirs.root)).toEqual([]);

    const rows = ledger(gateway.store, "agent:main:twice");
    expect(rows).toHaveLength(2);
    expect(rows.every((row) => row.state === "released" && row.outcome === "removed")).toBe(true);
    expect(rows[0]?.path).not.toBe(rows[1]?.path);

    const history = await call<{ messages: { role: string; content: unknown }[]; totalMessages: number }>(client, "chat.history", { sessionKey: "twice" });
    expect(history.totalMessages).toBe(4);
    expect(history.messages.map((message) => message.role)).toEqual(["user", "assistant", "user", "assistant"]);
    expect(history.messages[0]?.content).toBe("first");
    expect(history.messages[1]?.content).toEqual([{ type: "text", text: "Echo: first" }]);
    expect(history.messages[2]?.content).toBe("second");
    expect(history.messages[3]?.content).toEqual([{ type: "text", text: "Echo: second" }]);
    expect((await listSessions(client)).map((session) => session.key)).toEqual(["agent:main:twice"]);
  });
});

describe("sessions that end by an operator", () => {
  it("sessions.delete removes a live workspace and the session", async () => {
    const dirs = await makeDirs();
    const gateway = await startTestGateway({ ...dirs, idleTtlMs: 60_000 });
    const client = await connectAdmin(gateway.url);

    expect((await chatTurn(client, "doomed", "hi")).state).toBe("final");
    expect((await chatTurn(client, "bystander", "hi")).state).toBe("final");
    const [row] = ledger(gateway.store, "agent:main:doomed");
    expect(row?.state).toBe("live");
    const dir = row?.path as string;
    expect(statSync(dir).isDirectory()).toBe(true);

    expect(await call(client, "sessions.delete", { key: "doomed" })).toMatchObject({ ok: true, deleted: true });

    expect(existsSync(dir)).toBe(false);
    expect(gateway.store.getLease(row?.leaseId as string)).toMatchObject({ state: "released", releaseReason: "delete", outcome: "removed" });
    expect((await listSessions(client)).map((session) => session.key)).toEqual(["agent:main:bystander"]);
    // Only the other session's workspace is left.
    const [other] = ledger(gateway.store, "agent:main:bystander");
    expect(other?.state).toBe("live");
    expect(await leaseEntries(dirs.root)).toEqual([path.basename(other?.path as string)]);
  });

  it("sessions.reset removes the workspace, keeps the session, and the next run gets a new directory", async () => {
    const dirs = await makeDirs();
    const gateway = await startTestGateway({ ...dirs, idleTtlMs: 60_000 });
    const client = await connectAdmin(gateway.url);

    expect((await chatTurn(client, "again", "hi")).state).toBe("final");
    const [before] = await listSessions(client);
    const [first] = ledger(gateway.store, "agent:main:again");
    const firstDir = first?.path as string;
    expect(before?.workspaceDir).toBe(firstDir);
    expect(existsSync(firstDir)).toBe(true);

    expect(await call(client, "sessions.reset", { key: "again" })).toMatchObject({ ok: true, key: "agent:main:again" });

    expect(existsSync(firstDir)).toBe(false);
    expect(gateway.store.getLease(first?.leaseId as string)).toMatchObject({ state: "released", releaseReason: "reset", outcome: "removed" });
    const afterReset = await listSessions(client);
    expect(afterReset).toHaveLength(1);
    expect(afterReset[0]).toMatchObject({ key: "agent:main:again", sessionId: before?.sessionId, workspaceDir: null });
    expect(await leaseEntries(dirs.root)).toEqual([]);

    expect((await chatTurn(client, "again", "hi again")).state).toBe("final");
    const rows = ledger(gateway.store, "agent:main:again");
    expect(rows).toHaveLength(2);
    const secondDir = rows[1]?.path as string;
    expect(secondDir).not.toBe(firstDir);
    expect(statSync(secondDir).isDirectory()).toBe(true);
    expect(rows[1]?.state).toBe("live");
    expect(await leaseEntries(dirs.root)).toEqual([path.basename(secondDir)]);
  });

  it("graceful shutdown releases every live workspace, and close() twice is fine", async () => {
    const dirs = await makeDirs();
    const gateway = await startTestGateway({ ...dirs, idleTtlMs: 60_000 });
    const client = await connectAdmin(gateway.url);

    const acks = await Promise.all(Array.from({ length: 20 }, (_, i) => chatSend(client, `live-${i}`, `hi ${i}`)));
    await waitForTerminals(
      client,
      acks.map((ack) => ack.runId),
    );
    expect(await leaseEntries(dirs.root)).toHaveLength(20);
    expect(gateway.store.countLeases().live).toBe(20);

    await withTimeout(gateway.close(), "close()", 15_000);
    await withTimeout(gateway.close(), "a second close()", 15_000);
    await withTimeout(client.closed, "the client socket to close");

    expect(await leaseEntries(dirs.root)).toEqual([]);
    const rows = readLedger(dirs.stateDir);
    expect(rows).toHaveLength(20);
    for (const row of rows) expect(row).toMatchObject({ state: "released", releaseReason: "shutdown", outcome: "removed" });
  });
});

describe("idle timeout", () => {
  it("releases a workspace idleTtlMs after its last run", async () => {
    const dirs = await makeDirs();
    const gateway = await startTestGateway({ ...dirs, idleTtlMs: 300 });
    const client = await connectAdmin(gateway.url);

    expect((await chatTurn(client, "idler", "hi")).state).toBe("final");
    const [row] = ledger(gateway.store, "agent:main:idler");
    const dir = row?.path as string;
    expect(existsSync(dir)).toBe(true);

    await waitUntil(() => !existsSync(dir), "the idle release");
    await waitUntil(() => gateway.store.getLease(row?.leaseId as string)?.state === "released", "the ledger row to be released");
    expect(gateway.store.getLease(row?.leaseId as string)).toMatchObject({ releaseReason: "idle", outcome: "removed" });
    expect(await leaseEntries(dirs.root)).toEqual([]);
    // The session itself stays.
    expect((await listSessions(client)).map((session) => session.key)).toEqual(["agent:main:idler"]);
  });

  it("a new run before the timer fires cancels it: the directory stays while runs keep coming", async () => {
    const dirs = await makeDirs();
    // A TTL well above the gap between one final and the next send on a loaded machine, and a
    // run longer than the TTL: a timer that was not cancelled would release mid-run.
    const gateway = await startTestGateway({ ...dirs, idleTtlMs: 1000 });
    const client = await connectAdmin(gateway.url);

    expect((await chatTurn(client, "busy", "one")).state).toBe("final");
    const [row] = ledger(gateway.store, "agent:main:busy");
    const dir = row?.path as string;
    expect(existsSync(dir)).toBe(true);

    expect((await chatTurn(client, "busy", "/echo:sleep 1500 two")).state).toBe("final");
    expect(existsSync(dir)).toBe(true);
    for (let i = 0; i < 5; i += 1) {
      expect((await chatTurn(client, "busy", `more ${i}`)).state).toBe("final");
      expect(existsSync(dir)).toBe(true);
    }
    expect(ledger(gateway.store, "agent:main:busy")).toHaveLength(1);
    expect(gateway.store.getLease(row?.leaseId as string)?.state).toBe("live");

    await waitUntil(() => gateway.store.getLease(row?.leaseId as string)?.state === "released", "the idle release after the last run");
    expect(existsSync(dir)).toBe(false);
    expect(gateway.store.getLease(row?.leaseId as string)).toMatchObject({ releaseReason: "idle", outcome: "removed" });
  });
});

describe("other implicit workspace modes", () => {
  it('"persistent": a kept per-session directory under the state dir, never in the ephemeral root', async () => {
    const dirs = await makeDirs();
    const gateway = await startTestGateway({ ...dirs, idleTtlMs: 0, implicit: "persistent" });
    const client = await connectAdmin(gateway.url);
    const expected = (key: string): string => path.join(dirs.stateDir, `workspace-${slugKey(key)}-${createHash("sha256").update(key, "utf8").digest("hex").slice(0, 12)}`);

    expect((await chatTurn(client, "keep-a", "hi")).state).toBe("final");
    expect((await chatTurn(client, "keep-b", "hi")).state).toBe("final");
    const dirA = expected("agent:main:keep-a");
    const dirB = expected("agent:main:keep-b");
    expect(dirA).not.toBe(dirB);
    for (const [key, dir] of [
      ["agent:main:keep-a", dirA],
      ["agent:main:keep-b", dirB],
    ] as const) {
      const rows = ledger(gateway.store, key);
      expect(rows).toHaveLength(1);
      expect(rows[0]).toMatchObject({ kind: "persistent", mode: "persistent", path: dir, state: "released", releaseReason: "run-end", outcome: "kept" });
      expect(statSync(dir).isDirectory()).toBe(true);
    }

    expect(await call(client, "sessions.delete", { key: "keep-a" })).toMatchObject({ deleted: true });
    expect(statSync(dirA).isDirectory()).toBe(true);
    expect(await leaseEntries(dirs.root)).toEqual([]);
  });

  it('"persistent": sessions.delete of a live lease keeps the directory (outcome "kept")', async () => {
    const dirs = await makeDirs();
    const gateway = await startTestGateway({ ...dirs, idleTtlMs: 60_000, implicit: "persistent" });
    const client = await connectAdmin(gateway.url);

    expect((await chatTurn(client, "keeper", "hi")).state).toBe("final");
    const [row] = ledger(gateway.store, "agent:main:keeper");
    expect(row?.state).toBe("live");
    expect(path.dirname(row?.path as string)).toBe(dirs.stateDir);

    expect(await call(client, "sessions.delete", { key: "keeper" })).toMatchObject({ deleted: true });
    expect(gateway.store.getLease(row?.leaseId as string)).toMatchObject({ state: "released", releaseReason: "delete", outcome: "kept" });
    expect(statSync(row?.path as string).isDirectory()).toBe(true);
    expect(await leaseEntries(dirs.root)).toEqual([]);
  });

  it('"agent": every implicit session runs in the default agent\'s workspace, which is kept', async () => {
    const dirs = await makeDirs();
    const gateway = await startTestGateway({ ...dirs, idleTtlMs: 0, implicit: "agent" });
    const client = await connectAdmin(gateway.url);

    for (const key of ["ag-1", "ag-2", "ag-3"]) expect((await chatTurn(client, key, "hi")).state).toBe("final");

    const shared = path.join(dirs.stateDir, "workspace");
    const rows = ledger(gateway.store);
    expect(rows).toHaveLength(3);
    for (const row of rows) expect(row).toMatchObject({ kind: "persistent", mode: "agent", path: shared, state: "released", outcome: "kept" });
    expect(statSync(shared).isDirectory()).toBe(true);
    expect(readdirSync(dirs.stateDir).filter((name) => name.startsWith("workspace"))).toEqual(["workspace"]);
    expect(await leaseEntries(dirs.root)).toEqual([]);
  });

  it('"none": no directory anywhere, ledger rows of kind "none"', async () => {
    const dirs = await makeDirs();
    const gateway = await startTestGateway({ ...dirs, idleTtlMs: 0, implicit: "none" });
    const client = await connectAdmin(gateway.url);

    for (const key of ["no-1", "no-2", "no-3"]) expect((await chatTurn(client, key, "hi")).state).toBe("final");

    const rows = ledger(gateway.store);
    expect(rows).toHaveLength(3);
    for (const row of rows) expect(row).toMatchObject({ kind: "none", mode: "none", path: null, state: "released" });
    expect(await leaseEntries(dirs.root)).toEqual([]);
    expect(readdirSync(dirs.stateDir).filter((name) => !name.startsWith("ocgw.sqlite"))).toEqual([]);
  });
});

describe("concurrency on one key", () => {
  it("50 concurrent chat.send on one new key share one session and one workspace", async () => {
    const dirs = await makeDirs();
    const gateway = await startTestGateway({ ...dirs, idleTtlMs: 60_000 });
    const client = await connectAdmin(gateway.url);

    const acks = await Promise.all(Array.from({ length: 50 }, (_, i) => chatSend(client, "crowd", `turn ${i}`)));
    expect(acks.map((ack) => ack.status)).toEqual(Array.from({ length: 50 }, () => "started"));
    expect(new Set(acks.map((ack) => ack.runId)).size).toBe(50);
    const terminals = await waitForTerminals(
      client,
      acks.map((ack) => ack.runId),
    );
    expect([...terminals.values()].map((event) => event.state)).toEqual(Array.from({ length: 50 }, () => "final"));

    const sessions = await listSessions(client);
    expect(sessions.map((session) => session.key)).toEqual(["agent:main:crowd"]);
    const rows = ledger(gateway.store);
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ sessionKey: "agent:main:crowd", state: "live" });
    expect(await leaseEntries(dirs.root)).toEqual([path.basename(rows[0]?.path as string)]);
    expect(sessions[0]?.workspaceDir).toBe(rows[0]?.path);
  });
});

describe("release and acquire of one session", () => {
  it("regression: pipelined sessions.delete, sessions.delete, chat.send on one key deadlocked release against acquire", async () => {
    const dirs = await makeDirs();
    // A shutdown bound far above the hang bound: a close() that waits for a stuck run fails the test.
    const gateway = await startGateway(gatewayConfig({ ...dirs, idleTtlMs: 60_000 }), { shutdownTimeoutMs: 10 * LONG_HANG_MS });
    onTestFinished(() => gateway.close());
    const client = await connectAdmin(gateway.url);
    expect((await chatTurn(client, "knot", "first")).state).toBe("final");
    const [first] = ledger(gateway.store, "agent:main:knot");
    expect(first?.state).toBe("live");

    // Three frames in one burst, none awaited: the second delete's release is queued behind the
    // first, and the run's acquire behind both.
    const frames = [
      { type: "req", id: "knot-delete-1", method: "sessions.delete", params: { key: "knot" } },
      { type: "req", id: "knot-delete-2", method: "sessions.delete", params: { key: "knot" } },
      { type: "req", id: "knot-send", method: "chat.send", params: { sessionKey: "knot", message: "after the deletes", idempotencyKey: "knot-run" } },
    ];
    for (const frame of frames) client.sendJson(frame);
    const answers = await Promise.all(frames.map((frame) => client.next((res) => res.type === "res" && res.id === frame.id, LONG_HANG_MS)));
    expect(answers.map((res) => res.ok)).toEqual([true, true, true]);
    expect(answers[2]?.payload).toMatchObject({ runId: "knot-run", status: "started" });

    const waited = await call<{ status: string }>(client, "agent.wait", { runId: "knot-run", timeoutMs: LONG_HANG_MS });
    expect(waited.status).toBe("ok");
    expect((await chatTurn(client, "knot", "later")).state).toBe("final");
    expect(chatEvents(client, "knot-run").filter((event) => TERMINAL_STATES.has(event.state))).toHaveLength(1);
    expect(gateway.store.getLease(first?.leaseId as string)).toMatchObject({ state: "released", releaseReason: "delete", outcome: "removed" });

    await withTimeout(gateway.close(), "close()", LONG_HANG_MS);
    expect(await leaseEntries(dirs.root)).toEqual([]);
    expect(readLedger(dirs.stateDir).filter((row) => row.state !== "released")).toEqual([]);
  });
});
