import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { createEphemeralProvider } from "@ocgw/workspace";
import { describe, expect, it, onTestFinished } from "vitest";
import { collectWorkspaces, listWorkspaces } from "../../src/index.ts";

describe("collectWorkspaces (offline, no provider)", () => {
  it("without a state database: sweeps the root alone, reclaiming a closed provider's leases and keeping a live one's", async () => {
    const base = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "ocgw-cli-")));
    onTestFinished(() => fs.rm(base, { recursive: true, force: true }));
    const root = path.join(base, "eph");
    const config = path.join(base, "c.json");
    await fs.writeFile(config, JSON.stringify({ stateDir: path.join(base, "state"), workspace: { ephemeral: { root } } }));
    const dead = await createEphemeralProvider({ root, seed: "none" });
    await dead.acquire({ key: "gone-1" });
    await dead.acquire({ key: "gone-2" });
    await dead.close();
    const live = await createEphemeralProvider({ root, seed: "none" });
    onTestFinished(() => live.close());
    const kept = await live.acquire({ key: "alive" });

    const listed = await listWorkspaces({ configPath: config, env: {} });
    expect(listed.ledger).toBe(false);
    expect(listed.counts).toMatchObject({ live: 1, orphaned: 2 });

    const summary = await collectWorkspaces({ configPath: config, env: {} });
    expect(summary).toMatchObject({ reclaimed: 2, kept: 1, failed: 0, ledgerReconciled: 0 });
    expect((await fs.readdir(root)).filter((name) => !name.startsWith("."))).toEqual([path.basename(kept.path as string)]);
    await expect(fs.lstat(path.join(base, "state"))).rejects.toMatchObject({ code: "ENOENT" });
  });
});
