import * as fs from "node:fs/promises";
import { describe, expect, it, onTestFinished } from "vitest";
import { startGateway } from "../../src/index.ts";
import { TOKEN, connect } from "./harness.ts";
import { chatTurn, connectAdmin, makeDirs, request } from "./lifecycle-harness.ts";

// Regression (issue 9, "unbounded growth"): sessions.create { workspace: "persistent" } let any
// write-scoped caller create kept directories without limit (they ignore maxLeases, and the
// collector never sees them).
describe("kept per-session directories are an admin's choice, and bounded", () => {
  it("a write-scoped caller is refused; an admin gets one per session up to workspace.persistent.maxSessions", async () => {
    const dirs = await makeDirs();
    const gateway = await startGateway({
      stateDir: dirs.stateDir,
      gateway: { port: 0, auth: { token: TOKEN } },
      workspace: { ephemeral: { root: dirs.root, idleTtlMs: 0 }, persistent: { maxSessions: 1 }, gc: { onStartup: false, intervalMs: 0 } },
    });
    onTestFinished(() => gateway.close());
    const kept = async (): Promise<string[]> => (await fs.readdir(dirs.stateDir)).filter((name) => name.startsWith("workspace-"));
    const writer = await connect(gateway.url);
    const refused = await request(writer, "sessions.create", { key: "mine", workspace: "persistent" });
    expect(refused.error).toMatchObject({ code: "FORBIDDEN", details: { missingScope: "operator.admin" } });
    expect((await request(writer, "sessions.create", { key: "mine-ephemeral", workspace: "ephemeral" })).ok).toBe(true);

    const admin = await connectAdmin(gateway.url);
    expect((await request(admin, "sessions.create", { key: "one", workspace: "persistent" })).ok).toBe(true);
    expect((await chatTurn(admin, "one", "hello")).state).toBe("final");
    expect(await kept()).toHaveLength(1);
    // The same session again is fine: it owns its directory already.
    expect((await chatTurn(admin, "one", "again")).state).toBe("final");
    expect((await request(admin, "sessions.create", { key: "two", workspace: "persistent" })).ok).toBe(true);
    const over = await chatTurn(admin, "two", "hello");
    expect(over).toMatchObject({ state: "error", errorCode: "WORKSPACE_LIMIT" });
    expect(await kept()).toHaveLength(1);
  });
});
