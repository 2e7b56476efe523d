import * as fs from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { TOKEN } from "./harness.ts";
import { call, chatSend, connectAdmin, makeDirs, request, waitForTerminals } from "./lifecycle-harness.ts";
import { startGateway } from "../../src/index.ts";
import { onTestFinished } from "vitest";

// Regression (issue 9, "unbounded growth"): the run queue of one session had no bound, so one
// caller could park any number of runs (and transcript rows) behind a slow turn.
describe("a session's run queue is bounded (session.maxQueuedRuns)", () => {
  it("refuses the run beyond the bound with RUN_QUEUE_FULL, writes nothing for it, and accepts again once the queue drains", async () => {
    const dirs = await makeDirs();
    const gate = path.join(dirs.stateDir, "..", "gate");
    // Each run waits until the gate file exists: the first run holds the lane, the others queue.
    const script = `while [ ! -e ${JSON.stringify(gate)} ]; do sleep 0.02; done; echo done`;
    const gateway = await startGateway({
      stateDir: dirs.stateDir,
      gateway: { port: 0, auth: { token: TOKEN } },
      session: { maxQueuedRuns: 2 },
      workspace: { ephemeral: { root: dirs.root, idleTtlMs: 0 }, gc: { onStartup: false, intervalMs: 0 } },
      runner: { kind: "command", command: { argv: ["sh", "-c", script] } },
    });
    onTestFinished(() => gateway.close());
    const client = await connectAdmin(gateway.url);
    const accepted = [];
    for (const n of [1, 2, 3]) accepted.push((await chatSend(client, "busy", `m${n}`, { idempotencyKey: `run-${n}` })).runId);
    const refused = await request(client, "chat.send", { sessionKey: "busy", message: "m4", idempotencyKey: "run-4" });
    expect(refused.ok).toBe(false);
    expect(refused.error).toMatchObject({ code: "UNAVAILABLE", retryable: true, details: { code: "RUN_QUEUE_FULL", waiting: 2 } });
    expect(gateway.store.getRun("run-4")).toBeUndefined();
    // A replay of an accepted run is still answered; another session is not affected.
    expect((await request(client, "chat.send", { sessionKey: "busy", message: "m3", idempotencyKey: "run-3" })).ok).toBe(true);
    await fs.writeFile(gate, "");
    await waitForTerminals(client, accepted);
    const history = await call<{ messages: { role: string }[] }>(client, "chat.history", { sessionKey: "busy" });
    expect(history.messages.filter((message) => message.role === "user")).toHaveLength(3);
    expect((await chatSend(client, "busy", "m5", { idempotencyKey: "run-5" })).runId).toBe("run-5");
  });
});
