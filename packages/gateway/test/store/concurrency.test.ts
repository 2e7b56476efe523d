import { once } from "node:events";
import * as path from "node:path";
import { Worker } from "node:worker_threads";
import { describe, expect, it, onTestFinished } from "vitest";
import { openStore, type Store } from "../../src/store/index.ts";
import { session } from "./contract.ts";
import { tempDir } from "./temp-dir.ts";

function range(from: number, to: number): number[] {
  return Array.from({ length: to - from + 1 }, (_, i) => from + i);
}

function openFile(file: string): Store {
  const store = openStore({ path: file });
  onTestFinished(() => store.close());
  return store;
}

describe("appendMessage under load", () => {
  it("500 appends across 50 sessions in one transaction give each session contiguous seqs in append order", () => {
    const store = openFile(path.join(tempDir(), "state.db"));
    const keys = range(0, 49).map((i) => `agent:main:s${i}`);
    for (const key of keys) store.insertSession(session(key));
    // A fixed scramble (7 is coprime with 50) so sessions interleave unevenly, not round-robin.
    const order = range(0, 499).map((i) => keys[(i * 7 + Math.floor(i / 50)) % 50] ?? "");
    const appended = store.transaction(() =>
      order.map((key, i) => store.appendMessage({ sessionKey: key, role: "user", content: { i }, runId: null, idempotencyKey: `idem-${i}`, createdAt: i })),
    );

    expect(appended).toHaveLength(500);
    expect(new Set(appended.map((m) => m.id)).size).toBe(500);
    for (const key of keys) {
      const { messages, total } = store.listMessages(key);
      expect(total).toBe(10);
      expect(messages.map((m) => m.seq)).toEqual(range(1, 10));
      const sent = appended.filter((m) => m.sessionKey === key).map((m) => m.content);
      expect(messages.map((m) => m.content)).toEqual(sent);
    }
  });

  it("two connections to one file interleaving appends to the same session never reuse a seq", () => {
    const file = path.join(tempDir(), "state.db");
    const a = openFile(file);
    const b = openFile(file);
    a.insertSession(session("shared"));
    const seen: number[] = [];
    for (let i = 0; i < 100; i += 1) {
      const writer = i % 3 === 0 ? b : a;
      seen.push(writer.appendMessage({ sessionKey: "shared", role: "user", content: i, runId: null, idempotencyKey: null, createdAt: i }).seq);
    }
    expect(seen).toEqual(range(1, 100));
    expect(b.listMessages("shared", { limit: 1000 }).messages.map((m) => m.content)).toEqual(range(0, 99));
  });

  it("a store in another thread appending at the same time still yields contiguous seqs", async () => {
    const file = path.join(tempDir(), "state.db");
    const store = openFile(file);
    store.insertSession(session("shared"));
    const gate = new Int32Array(new SharedArrayBuffer(4));
    const storeUrl = new URL("../../src/store/index.ts", import.meta.url).href;
    const worker = new Worker(
      `
      const { workerData, parentPort } = require("node:worker_threads");
      import(workerData.storeUrl).then(({ openStore }) => {
        const store = openStore({ path: workerData.file });
        parentPort.postMessage("ready");
        Atomics.wait(workerData.gate, 0, 0);
        const seqs = [];
        for (let i = 0; i < 300; i += 1) {
          seqs.push(store.appendMessage({ sessionKey: "shared", role: "assistant", content: "w" + i, runId: null, idempotencyKey: null, createdAt: i }).seq);
        }
        store.close();
        parentPort.postMessage(seqs);
      }, (error) => parentPort.postMessage(String(error)));
      `,
      { eval: true, workerData: { file, storeUrl, gate } },
    );
    onTestFinished(async () => {
      await worker.terminate();
    });
    const [ready] = (await once(worker, "message")) as [unknown];
    expect(ready).toBe("ready");
    const done = once(worker, "message");
    // Both threads start appending at the same moment.
    Atomics.store(gate, 0, 1);
    Atomics.notify(gate, 0);
    const mine: number[] = [];
    for (let i = 0; i < 300; i += 1) {
      mine.push(store.appendMessage({ sessionKey: "shared", role: "user", content: `m${i}`, runId: null, idempotencyKey: null, createdAt: i }).seq);
      // SQLite's busy handler backs off by sleeping, so a tight loop here would starve the worker; pausing lets the two interleave.
      if (i % 20 === 19) await new Promise((resolve) => setTimeout(resolve, 1));
    }
    const [theirs] = (await done) as [unknown];
    expect(Array.isArray(theirs), String(theirs)).toBe(true);

    const all = [...mine, ...(theirs as number[])].sort((x, y) => x - y);
    expect(all).toEqual(range(1, 600));
    const stored = store.listMessages("shared", { limit: 1000 }).messages;
    expect(stored.map((m) => m.seq)).toEqual(range(1, 600));
    // Each writer's own messages keep their order.
    expect(stored.filter((m) => m.role === "user").map((m) => m.content)).toEqual(range(0, 299).map((i) => `m${i}`));
    expect(stored.filter((m) => m.role === "assistant").map((m) => m.content)).toEqual(range(0, 299).map((i) => `w${i}`));
  });
});
