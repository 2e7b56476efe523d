import { describe, expect, it } from "vitest";
import { createSerialQueue } from "../../src/sessions/serial-queue.ts";

function deferred(): { promise: Promise<void>; resolve(): void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => (resolve = r));
  return { promise, resolve };
}

describe("serial queue", () => {
  it("runs tasks one at a time, in the order they were queued", async () => {
    const queue = createSerialQueue();
    const log: string[] = [];
    const gate = deferred();
    const first = queue.push(async () => {
      log.push("first:start");
      await gate.promise;
      log.push("first:end");
    });
    const second = queue.push(async () => void log.push("second"));
    await Promise.resolve();
    expect(log).toEqual(["first:start"]);
    expect(queue.size).toBe(2);
    gate.resolve();
    await Promise.all([first, second]);
    expect(log).toEqual(["first:start", "first:end", "second"]);
  });

  it("a task that fails does not stop the ones queued after it", async () => {
    const queue = createSerialQueue();
    const failing = queue.push(() => Promise.reject(new Error("boom")));
    const after = queue.push(() => Promise.resolve("ran"));
    await expect(failing).rejects.toThrow("boom");
    await expect(after).resolves.toBe("ran");
  });

  it("a waiting task is abortable: it rejects at once with the reason and never runs", async () => {
    const drained: number[] = [];
    const queue = createSerialQueue(() => drained.push(queue.size));
    const gate = deferred();
    const blocker = queue.push(() => gate.promise);
    const controller = new AbortController();
    let ran = false;
    const waiting = queue.push(async () => void (ran = true), controller.signal);
    const reason = new Error("run aborted");
    controller.abort(reason);
    // Rejected while the task ahead of it is still running.
    await expect(waiting).rejects.toBe(reason);
    expect(queue.size).toBe(2);
    gate.resolve();
    await blocker;
    await queue.push(() => Promise.resolve());
    expect(ran).toBe(false);
    expect(queue.size).toBe(0);
    expect(drained.at(-1)).toBe(0);
  });

  it("a task that has started runs to its end even if its signal aborts", async () => {
    const queue = createSerialQueue();
    const gate = deferred();
    const controller = new AbortController();
    const started = deferred();
    const task = queue.push(async () => {
      started.resolve();
      await gate.promise;
      return "finished";
    }, controller.signal);
    await started.promise;
    controller.abort(new Error("late"));
    gate.resolve();
    await expect(task).resolves.toBe("finished");
  });
});
