/**
 * A graceful shutdown's releases (lifecycle.releaseAll): bounded to RELEASE_CONCURRENCY at a time,
 * and none starts after the deadline, when the shutdown goes on to close the store and the
 * providers under it. Real SQLite store, the real none provider behind a gate that holds releases.
 */
import * as path from "node:path";
import { type WorkspaceProvider, createNoneProvider } from "@ocgw/workspace";
import { describe, expect, it, onTestFinished } from "vitest";
import { RELEASE_CONCURRENCY, createWorkspaceLifecycle } from "../../src/sessions/workspaces.ts";
import { openStore } from "../../src/store/index.ts";
import { tempDir } from "../store/temp-dir.ts";

describe("releaseAll at shutdown", () => {
  it("regression: starts no release after its deadline (they used to go on starting while the store and providers closed)", async () => {
    const store = openStore({ path: path.join(tempDir(), "ocgw.sqlite") });
    onTestFinished(() => store.close());
    const none = createNoneProvider({ defaultAgentId: "main" });
    let started = 0;
    let openGate!: () => void;
    const gate = new Promise<void>((resolve) => (openGate = resolve));
    const gated: WorkspaceProvider = {
      ...none,
      acquire: (request) => none.acquire(request),
      async release(lease, reason) {
        started += 1;
        await gate;
        return none.release(lease, reason);
      },
    };
    const lifecycle = createWorkspaceLifecycle({
      store,
      providers: { ephemeral: gated, agent: gated, persistent: gated, none: gated },
      instanceId: "test-instance",
      idleTtlMs: 60_000,
      killSessionProcesses: () => Promise.resolve(),
    });
    const sessions = 3 * RELEASE_CONCURRENCY;
    for (let i = 0; i < sessions; i += 1) await lifecycle.acquire(`agent:main:s${i}`, "main", "none");

    const left = await lifecycle.releaseAll("shutdown", 50);
    expect(left).toBe(sessions);
    const startedByDeadline = started;
    expect(startedByDeadline).toBe(RELEASE_CONCURRENCY);
    openGate();
    await new Promise((resolve) => setTimeout(resolve, 100));
    expect(started).toBe(startedByDeadline);
    expect(store.countLeases().released).toBe(RELEASE_CONCURRENCY);
  });
});
