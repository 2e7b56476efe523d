import { once } from "node:events";
import * as path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { Worker } from "node:worker_threads";
import { describe, expect, it, onTestFinished } from "vitest";
import { LATEST_SCHEMA_VERSION, openStore } from "../../src/store/index.ts";
import { lease, session, testStore } from "./contract.ts";
import { tempDir } from "./temp-dir.ts";

testStore("file database", () => openStore({ path: path.join(tempDir(), "state.db") }));
testStore(":memory:", () => openStore({ path: ":memory:" }));

describe("file store", () => {
  it("keeps everything across close and reopen", () => {
    const file = path.join(tempDir(), "state.db");
    const first = openStore({ path: file });
    expect(first.path).toBe(file);
    first.insertSession(session("agent:main:a", { label: "Kept" }));
    first.appendMessage({ sessionKey: "agent:main:a", role: "user", content: { text: "hello" }, runId: "r1", idempotencyKey: "i1", createdAt: 5 });
    first.insertRun({ runId: "r1", sessionKey: "agent:main:a", kind: "chat", inputHash: "h", startedAt: 5 });
    first.finishRun("r1", { status: "ok", replyText: "hi", endedAt: 6 });
    first.recordLease(lease("l1", { sessionKey: "agent:main:a" }));
    first.markLeaseLive("l1", { path: "/tmp/w", dev: "1", ino: "2" });
    first.close();

    const second = openStore({ path: file });
    onTestFinished(() => second.close());
    expect(second.schemaVersion).toBe(LATEST_SCHEMA_VERSION);
    expect(second.getSession("agent:main:a")?.label).toBe("Kept");
    expect(second.listMessages("agent:main:a").messages).toEqual([expect.objectContaining({ seq: 1, content: { text: "hello" }, runId: "r1", idempotencyKey: "i1" })]);
    expect(second.getRun("r1")).toMatchObject({ status: "ok", replyText: "hi", endedAt: 6 });
    expect(second.getLease("l1")).toMatchObject({ state: "live", dev: "1", ino: "2" });
    expect(second.appendMessage({ sessionKey: "agent:main:a", role: "assistant", content: "next", runId: null, idempotencyKey: null, createdAt: 7 }).seq).toBe(2);
  });

  it("puts a file database in WAL mode and a memory one not", () => {
    const file = path.join(tempDir(), "state.db");
    const store = openStore({ path: file });
    onTestFinished(() => store.close());
    const probe = new DatabaseSync(file);
    onTestFinished(() => probe.close());
    expect(probe.prepare("PRAGMA journal_mode").get()).toEqual(expect.objectContaining({ journal_mode: "wal" }));
    expect(probe.prepare("PRAGMA user_version").get()).toEqual(expect.objectContaining({ user_version: LATEST_SCHEMA_VERSION }));

    const memory = openStore({ path: ":memory:" });
    onTestFinished(() => memory.close());
    expect(memory.path).toBe(":memory:");
    expect(memory.schemaVersion).toBe(LATEST_SCHEMA_VERSION);
  });

  it("waits for another connection's write lock instead of failing at once", async () => {
    const file = path.join(tempDir(), "state.db");
    const store = openStore({ path: file });
    onTestFinished(() => store.close());
    const gate = new Int32Array(new SharedArrayBuffer(4));
    // The worker holds the write lock until told to go, then 300 ms more, while this thread is blocked in the store call.
    const worker = new Worker(
      `
      const { DatabaseSync } = require("node:sqlite");
      const { workerData, parentPort } = require("node:worker_threads");
      const db = new DatabaseSync(workerData.file);
      db.exec("BEGIN IMMEDIATE");
      parentPort.postMessage("locked");
      Atomics.wait(workerData.gate, 0, 0);
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 300);
      db.exec("COMMIT");
      db.close();
      parentPort.postMessage("released");
      `,
      { eval: true, workerData: { file, gate } },
    );
    onTestFinished(async () => {
      await worker.terminate();
    });
    const [first] = (await once(worker, "message")) as [string];
    expect(first).toBe("locked");

    // Control: without a busy timeout the same write fails, so the lock really is held.
    const impatient = new DatabaseSync(file, { timeout: 0 });
    onTestFinished(() => impatient.close());
    expect(() => impatient.exec("INSERT INTO runs (run_id, session_key, kind, input_hash, status, started_at) VALUES ('x', 'k', 'chat', 'h', 'running', 1)")).toThrow(/locked|busy/i);

    const released = once(worker, "message");
    Atomics.store(gate, 0, 1);
    Atomics.notify(gate, 0);
    expect(store.insertSession(session("k"))).toBe(true);
    const [second] = (await released) as [string];
    expect(second).toBe("released");
    expect(store.getSession("k")).toBeDefined();
  });
});
