import * as fs from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { removeLegacyOrphans, scanLegacyState } from "../../src/index.ts";
import { LATER, type OpenClawFixture, seedWorkspace, tempOpenClaw, writeConfig } from "./openclaw-fixture.ts";

const opts = (fx: OpenClawFixture) => ({ env: fx.env, homedir: fx.home, lockDir: fx.lockDir, now: LATER });
const scan = (fx: OpenClawFixture) => scanLegacyState({ dir: fx.stateDir, ...opts(fx) });

describe("removeLegacyOrphans", () => {
  it("skips a candidate replaced between scan and removal by an identical-looking directory (identity changed)", async () => {
    const fx = await tempOpenClaw();
    await seedWorkspace(fx, path.join(fx.stateDir, "workspace-aaaa"));
    await seedWorkspace(fx, path.join(fx.stateDir, "workspace-bbbb"));
    const plan = await scan(fx);
    expect(plan.candidates.map((entry) => path.basename(entry.path))).toEqual(["workspace-aaaa", "workspace-bbbb"]);
    // Moved aside rather than deleted, so the new directory cannot reuse the old inode.
    await fs.rename(path.join(fx.stateDir, "workspace-aaaa"), path.join(fx.base, "moved-aside"));
    await seedWorkspace(fx, path.join(fx.stateDir, "workspace-aaaa"));
    const removal = await removeLegacyOrphans(plan, opts(fx));
    expect(removal.removed.map((entry) => path.basename(entry.path))).toEqual(["workspace-bbbb"]);
    expect(removal.skipped).toEqual([{ path: path.join(fx.stateDir, "workspace-aaaa"), reason: expect.stringMatching(/device or inode changed/) }]);
    expect((await fs.readdir(path.join(fx.stateDir, "workspace-aaaa"))).length).toBeGreaterThan(0);
    expect((await fs.readdir(fx.stateDir)).filter((name) => name.startsWith(".trash-"))).toEqual([]);
  });

  it("refuses a candidate that became a symlink, and a sandboxes dir swapped for a link", async () => {
    const fx = await tempOpenClaw();
    const outside = path.join(fx.base, "outside");
    await fs.mkdir(outside);
    await fs.writeFile(path.join(outside, "keep.md"), "keep\n");
    await seedWorkspace(fx, path.join(fx.stateDir, "workspace-cccc"));
    await seedWorkspace(fx, path.join(fx.stateDir, "sandboxes", "workspace-dddd"));
    const plan = await scan(fx);
    // workspace-dddd is not named as OpenClaw names sandboxes, but the state dir's workspace-cccc is a candidate.
    expect(plan.candidates.map((entry) => path.basename(entry.path))).toEqual(["workspace-cccc"]);
    await fs.rm(path.join(fx.stateDir, "workspace-cccc"), { recursive: true });
    await fs.symlink(outside, path.join(fx.stateDir, "workspace-cccc"));
    const removal = await removeLegacyOrphans(plan, opts(fx));
    expect(removal.removed).toEqual([]);
    expect(removal.skipped.map((skip) => skip.reason)).toEqual([expect.stringContaining("symlink")]);
    expect(await fs.readdir(outside)).toEqual(["keep.md"]);
  });

  it("a sandboxes symlink is never entered; leftovers of an interrupted removal are candidates", async () => {
    const fx = await tempOpenClaw();
    const elsewhere = path.join(fx.base, "elsewhere");
    await seedWorkspace(fx, path.join(elsewhere, "workspace-0123456789abcdef0123456789abcdef"));
    await fs.symlink(elsewhere, path.join(fx.stateDir, "sandboxes"));
    await seedWorkspace(fx, path.join(fx.stateDir, ".trash-ocgw-legacy-abcdefghij"));
    await seedWorkspace(fx, path.join(fx.stateDir, ".trash-someone-else-abcdefghij"));
    const plan = await scan(fx);
    expect(plan.candidates.map((entry) => [path.basename(entry.path), entry.code])).toEqual([[".trash-ocgw-legacy-abcdefghij", "interrupted-removal"]]);
    expect(plan.warnings).toEqual([expect.stringContaining("sandboxes is a symlink: not followed")]);
  });

  it("a config it cannot read or understand stops the scan before anything is decided", async () => {
    const fx = await tempOpenClaw();
    await seedWorkspace(fx, path.join(fx.stateDir, "workspace-ffff"));
    await writeConfig(fx, JSON.stringify({ agents: { list: { main: {} } } }));
    await expect(scan(fx)).rejects.toMatchObject({ code: "LEGACY_UNSUPPORTED", message: expect.stringContaining("agents.list") });
    await writeConfig(fx, "{ agents: { list: [ { id: 'a' }, ] ");
    await expect(scan(fx)).rejects.toMatchObject({ code: "LEGACY_UNREADABLE", message: expect.stringMatching(/not valid JSON5: .* at line 1/) });
  });
});
