/**
 * The run manager behind a real protocol server: a run starts only once the reply that
 * acknowledges it has been written (MethodContext.acked), whatever the handler does after
 * admitting it. Real socket on port 0, real SQLite store, real lifecycle (none provider), echo runner.
 */
import * as path from "node:path";
import { createNoneProvider } from "@ocgw/workspace";
import { describe, expect, it, onTestFinished } from "vitest";
import { z } from "zod";
import { CONFIG_DEFAULTS } from "../../src/config/index.ts";
import { defineMethod } from "../../src/protocol/index.ts";
import type { ProtocolServer } from "../../src/protocol/index.ts";
import { createEchoRunner } from "../../src/runners/index.ts";
import { createRunManager } from "../../src/runs/run-manager.ts";
import { createWorkspaceLifecycle } from "../../src/sessions/workspaces.ts";
import { openStore } from "../../src/store/index.ts";
import { tempDir } from "../store/temp-dir.ts";
import { connectClient, startServer, waitFor } from "../protocol/helpers.ts";
import type { Frame } from "../protocol/helpers.ts";

const SESSION = "agent:main:gate";

/** A gateway core: store with one session, lifecycle, echo runner and run manager emitting on `server`. */
function startCore(wire: { server?: ProtocolServer }) {
  const store = openStore({ path: path.join(tempDir(), "ocgw.sqlite") });
  onTestFinished(() => store.close());
  const now = Date.now();
  store.insertSession({ key: SESSION, sessionId: "s-1", agentId: "main", label: null, createdVia: "implicit", workspaceMode: "none", createdAt: now, updatedAt: now, lastInteractionAt: null });
  const none = createNoneProvider({ defaultAgentId: "main" });
  const lifecycle = createWorkspaceLifecycle({
    store,
    providers: { ephemeral: none, agent: none, persistent: none, none },
    instanceId: "test-instance",
    idleTtlMs: 0,
    killSessionProcesses: () => Promise.resolve(),
  });
  const runs = createRunManager({
    store,
    lifecycle,
    runner: createEchoRunner(),
    defaultTimeoutMs: 10_000,
    deltas: { windowMs: CONFIG_DEFAULTS.gateway.deltaWindowMs, maxBytes: CONFIG_DEFAULTS.gateway.deltaMaxBytes },
    events: { chat: (payload) => wire.server?.broadcast("chat", payload), agent: (payload) => wire.server?.broadcast("agent", payload) },
  });
  return { store, runs };
}

function runIdOf(frame: Frame): unknown {
  return frame.type === "event" ? (frame.payload as { runId?: unknown } | undefined)?.runId : undefined;
}

describe("runs wait for their ack", () => {
  it("regression (defect 8, an event before its ack): a run admitted by a handler that replies a turn later emits nothing before that reply", async () => {
    const wire: { server?: ProtocolServer } = {};
    const { runs, store } = startCore(wire);
    const server = await startServer({
      methods: {
        // chat.send's shape, with more work after admitting the run than the real handler does today.
        "test.send": defineMethod({
          scope: "operator.write",
          params: z.object({ runId: z.string() }),
          handler: async (params, call) => {
            runs.submit({ runId: params.runId, kind: "chat", sessionKey: SESSION, agentId: "main", message: "hi there", mode: "none", useWorkspace: true, acked: call.acked });
            await new Promise((resolve) => setImmediate(resolve));
            return { runId: params.runId, status: "started" };
          },
        }),
      },
    });
    wire.server = server;
    const { client } = await connectClient(server.url);

    // One run alone, then three that queue behind each other in one session lane.
    const ids = ["solo", "q1", "q2", "q3"];
    await client.request("test.send", { runId: "solo" }, "req-solo");
    await waitFor(() => client.received.some((frame) => frame.event === "chat" && runIdOf(frame) === "solo" && (frame.payload as { state: string }).state === "final"), "solo's final event");
    for (const id of ids.slice(1)) client.sendJson({ type: "req", id: `req-${id}`, method: "test.send", params: { runId: id } });
    await waitFor(() => ids.every((id) => store.getRun(id)?.status === "ok"), "every run ended");
    await waitFor(() => client.received.some((frame) => frame.event === "chat" && runIdOf(frame) === "q3" && (frame.payload as { state: string }).state === "final"), "q3's final event");

    for (const id of ids) {
      const reply = client.received.findIndex((frame) => frame.type === "res" && frame.id === `req-${id}`);
      const first = client.received.findIndex((frame) => runIdOf(frame) === id);
      expect(reply, `${id}: its reply`).toBeGreaterThanOrEqual(0);
      expect(first, `${id}: its first event comes after its reply`).toBeGreaterThan(reply);
    }
    await runs.shutdown(new Error("test over"), 1000);
  });
});
