import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { removeLegacyOrphans, scanLegacyState } from "../../src/index.ts";

async function tempState(): Promise<string> {
  const base = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "ocgw-cli-")));
  onTestFinished(() => fs.rm(base, { recursive: true, force: true }));
  const dir = path.join(base, "openclaw");
  await fs.mkdir(dir);
  return dir;
}

async function seed(dir: string, file = "AGENTS.md"): Promise<void> {
  await fs.mkdir(dir, { recursive: true });
  await fs.writeFile(path.join(dir, file), "x".repeat(100));
}

describe("scanLegacyState / removeLegacyOrphans", () => {
  it("skips a candidate that was replaced between scan and removal (identity changed), removing nothing of the new one", async () => {
    const dir = await tempState();
    await seed(path.join(dir, "workspace-aaaa"));
    await seed(path.join(dir, "workspace-bbbb"));
    const scan = await scanLegacyState({ dir });
    expect(scan.candidates.map((candidate) => path.basename(candidate.path))).toEqual(["workspace-aaaa", "workspace-bbbb"]);
    // Moved aside rather than deleted, so the new directory cannot reuse the old inode.
    await fs.rename(path.join(dir, "workspace-aaaa"), path.join(dir, "moved-aside"));
    await seed(path.join(dir, "workspace-aaaa"), "NEW.md");
    const removal = await removeLegacyOrphans(scan);
    expect(removal.removed.map((candidate) => path.basename(candidate.path))).toEqual(["workspace-bbbb"]);
    expect(removal.skipped).toEqual([{ path: path.join(dir, "workspace-aaaa"), reason: expect.stringMatching(/^refused: .*device .*inode/) }]);
    expect(await fs.readdir(path.join(dir, "workspace-aaaa"))).toEqual(["NEW.md"]);
    expect((await fs.readdir(dir)).filter((name) => name.startsWith(".trash-"))).toEqual([]);
  });

  it("refuses a candidate that became a symlink, and a sandboxes dir swapped for a link", async () => {
    const dir = await tempState();
    const outside = path.join(path.dirname(dir), "outside");
    await seed(outside, "keep.md");
    await seed(path.join(dir, "workspace-cccc"));
    await seed(path.join(dir, "sandboxes", "workspace-dddd"));
    const scan = await scanLegacyState({ dir });
    expect(scan.candidates).toHaveLength(2);
    await fs.rm(path.join(dir, "workspace-cccc"), { recursive: true });
    await fs.symlink(outside, path.join(dir, "workspace-cccc"));
    await fs.rename(path.join(dir, "sandboxes"), path.join(dir, "sandboxes-old"));
    await fs.symlink(path.join(dir, "sandboxes-old"), path.join(dir, "sandboxes"));
    const removal = await removeLegacyOrphans(scan);
    expect(removal.removed).toEqual([]);
    expect(removal.skipped.map((skip) => skip.reason)).toEqual([expect.stringContaining("is not the directory that was scanned"), expect.stringContaining("it is a symlink now")]);
    expect(await fs.readdir(outside)).toEqual(["keep.md"]);
    expect(await fs.readdir(path.join(dir, "sandboxes-old"))).toEqual(["workspace-dddd"]);
  });

  it("a sandboxes symlink is never entered; leftovers of an interrupted removal are candidates", async () => {
    const dir = await tempState();
    const elsewhere = path.join(path.dirname(dir), "elsewhere");
    await seed(path.join(elsewhere, "workspace-eeee"));
    await fs.symlink(elsewhere, path.join(dir, "sandboxes"));
    await seed(path.join(dir, ".trash-ocgw-legacy-abcdefghij"));
    await seed(path.join(dir, ".trash-someone-else-abcdefghij"));
    const scan = await scanLegacyState({ dir });
    expect(scan.candidates.map((candidate) => [path.basename(candidate.path), candidate.location])).toEqual([[".trash-ocgw-legacy-abcdefghij", "trash"]]);
    expect(scan.skipped).toEqual([{ path: path.join(dir, "sandboxes"), reason: expect.stringContaining("symlink") }]);
  });

  it("refuses to guess when openclaw.json's agents are malformed", async () => {
    const dir = await tempState();
    await seed(path.join(dir, "workspace-ffff"));
    await fs.writeFile(path.join(dir, "openclaw.json"), JSON.stringify({ agents: { list: { main: {} } } }));
    await expect(scanLegacyState({ dir })).rejects.toMatchObject({ code: "LEGACY_UNREADABLE", message: expect.stringContaining("agents.list is not an array") });
    await fs.writeFile(path.join(dir, "openclaw.json"), JSON.stringify({ agents: { list: [{ workspace: "/x" }] } }));
    await expect(scanLegacyState({ dir })).rejects.toMatchObject({ code: "LEGACY_UNREADABLE", message: expect.stringContaining("agents.list[0] has no id") });
  });

  it("honours OPENCLAW_WORKSPACE_DIR (default agent only) and ~ in openclaw.json", async () => {
    const dir = await tempState();
    const home = path.dirname(dir);
    await seed(path.join(dir, "workspace-home"));
    await seed(path.join(dir, "workspace-envdir"));
    await fs.writeFile(path.join(dir, "openclaw.json"), JSON.stringify({ agents: { list: [{ id: "main" }, { id: "tilde", workspace: "~/openclaw/workspace-home" }, { id: "helper" }] } }));
    const scan = await scanLegacyState({ dir, homedir: home, env: { OPENCLAW_WORKSPACE_DIR: path.join(dir, "workspace-envdir") } });
    expect(scan.candidates).toEqual([]);
    expect(new Map(scan.agents.map((agent) => [agent.id, agent.workspace]))).toEqual(
      new Map([
        ["main", path.join(dir, "workspace-envdir")],
        ["tilde", path.join(dir, "workspace-home")],
        // The variable moves only the default agent's workspace, as upstream.
        ["helper", path.join(dir, "workspace-helper")],
      ]),
    );
  });
});
