import { randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { hashTree, runCli, tempDir } from "./helpers.ts";

interface LegacyJson {
  dir: string;
  dryRun: boolean;
  agents: { id: string; workspace: string }[];
  candidates: { path: string; sizeBytes: number; location: string }[];
  skipped: { path: string; reason: string }[];
  removed?: { path: string }[];
  removedBytes?: number;
  failed?: { path: string; reason: string }[];
}

const BOOTSTRAP = { "AGENTS.md": "# Agents\n".repeat(40), "SOUL.md": "soul\n", "IDENTITY.md": "id\n", "USER.md": "user\n" };

async function writeWorkspace(dir: string, extra: Record<string, string> = {}): Promise<void> {
  await fs.mkdir(path.join(dir, "memory", "2026"), { recursive: true });
  for (const [name, text] of Object.entries({ ...BOOTSTRAP, ...extra })) await fs.writeFile(path.join(dir, name), text);
  await fs.writeFile(path.join(dir, "memory", "2026", "notes.md"), `notes of ${path.basename(dir)}\n`);
}

/** A synthetic ~/.openclaw as older gateways left it, plus agent workspaces that must survive. */
async function buildOpenClawState(base: string): Promise<{ dir: string; orphans: string[]; agentDirs: string[]; outside: string; link: string }> {
  const dir = path.join(base, "openclaw-state");
  const research = path.join(base, "research-workspace");
  const outside = path.join(base, "outside-target");
  await fs.mkdir(dir);
  await fs.writeFile(
    path.join(dir, "openclaw.json"),
    `// OpenClaw config (JSON5)
{
  agents: {
    defaults: { model: "x" },
    list: [
      { id: "main", default: true, workspace: ${JSON.stringify(path.join(dir, "workspace"))} },
      { id: "ops" },
      { id: "research", workspace: ${JSON.stringify(research)} },
    ],
  },
}
`,
  );
  const agentDirs = [path.join(dir, "workspace"), path.join(dir, "workspace-ops"), research, path.join(dir, "workspace-legacyagent")];
  for (const agentDir of agentDirs) await writeWorkspace(agentDir, { "TOOLS.md": `tools of ${agentDir}\n` });
  await fs.mkdir(path.join(dir, "agents", "legacyagent", "sessions"), { recursive: true });
  await fs.mkdir(path.join(dir, "agents", "main", "sessions"), { recursive: true });

  const orphans: string[] = [];
  for (let i = 0; i < 100; i++) {
    const orphan = path.join(dir, `workspace-${randomBytes(6).toString("hex")}`);
    await fs.mkdir(orphan);
    for (const [name, text] of Object.entries(BOOTSTRAP)) await fs.writeFile(path.join(orphan, name), text);
    if (i % 10 === 0) await fs.mkdir(path.join(orphan, ".git", "objects"), { recursive: true });
    orphans.push(orphan);
  }
  await fs.mkdir(path.join(dir, "sandboxes"));
  for (let i = 0; i < 20; i++) {
    const sandbox = path.join(dir, "sandboxes", `workspace-${randomBytes(16).toString("hex")}`);
    await writeWorkspace(sandbox);
    orphans.push(sandbox);
  }
  await fs.mkdir(outside);
  await fs.writeFile(path.join(outside, "precious.txt"), "do not delete\n");
  await fs.mkdir(path.join(outside, "nested"));
  await fs.writeFile(path.join(outside, "nested", "deep.txt"), "deep\n");
  const link = path.join(dir, "workspace-link");
  await fs.symlink(outside, link);
  // Names that look like candidates but are not directories.
  await fs.writeFile(path.join(dir, "workspace-notes.txt"), "a file");
  return { dir, orphans: orphans.sort(), agentDirs, outside, link };
}

describe("ocgw workspaces gc --legacy", () => {
  it("lists exactly the 120 orphans, removes nothing without --yes, then removes exactly those and nothing else", async () => {
    const t = await tempDir();
    const state = await buildOpenClawState(t.dir);
    const protectedTrees = [...state.agentDirs, state.outside];
    const before = await Promise.all(protectedTrees.map((dir) => hashTree(dir)));
    const stateBefore = (await fs.readdir(state.dir)).sort();

    const dry = await runCli(["workspaces", "gc", "--legacy", state.dir, "--json"], { env: t.env });
    expect(dry.code).toBe(0);
    const scan = JSON.parse(dry.stdout) as LegacyJson;
    expect(scan.dryRun).toBe(true);
    expect(scan.candidates.map((candidate) => candidate.path).sort()).toEqual(state.orphans);
    expect(scan.candidates.every((candidate) => candidate.sizeBytes > 0)).toBe(true);
    expect(new Map(scan.agents.map((agent) => [agent.id, agent.workspace]))).toEqual(
      new Map([
        ["main", path.join(state.dir, "workspace")],
        ["ops", path.join(state.dir, "workspace-ops")],
        ["research", path.join(t.dir, "research-workspace")],
        ["legacyagent", path.join(state.dir, "workspace-legacyagent")],
      ]),
    );
    const skipped = new Map(scan.skipped.map((skip) => [path.basename(skip.path), skip.reason]));
    expect(skipped.get("workspace-link")).toBe("symlink: never followed or removed");
    expect(skipped.get("workspace-ops")).toMatch(/^kept: agent "ops" is configured/);
    expect(skipped.get("workspace-legacyagent")).toMatch(/^kept: agent "legacyagent" has .*agents\/legacyagent/);
    expect(skipped.get("workspace-notes.txt")).toBe("not a directory");
    expect((await fs.readdir(state.dir)).sort()).toEqual(stateBefore);
    expect(await fs.readdir(path.join(state.dir, "sandboxes"))).toHaveLength(20);

    const human = await runCli(["workspaces", "gc", "--legacy", state.dir], { env: t.env });
    expect(human.code).toBe(0);
    expect(human.stdout).toContain("120 orphaned workspace directories");
    expect(human.stdout).toContain(`Nothing removed. To remove these 120 directories`);
    expect(human.stdout).toContain("--yes");
    expect(await fs.readdir(path.join(state.dir, "sandboxes"))).toHaveLength(20);

    const removal = await runCli(["workspaces", "gc", "--legacy", state.dir, "--yes", "--json"], { env: t.env });
    expect(removal.code).toBe(0);
    const result = JSON.parse(removal.stdout) as LegacyJson;
    expect(result.dryRun).toBe(false);
    expect((result.removed ?? []).map((entry) => entry.path).sort()).toEqual(state.orphans);
    expect(result.failed).toEqual([]);
    expect(result.removedBytes).toBe(scan.candidates.reduce((sum, candidate) => sum + candidate.sizeBytes, 0));
    for (const orphan of state.orphans) await expect(fs.lstat(orphan)).rejects.toMatchObject({ code: "ENOENT" });
    expect(await fs.readdir(path.join(state.dir, "sandboxes"))).toEqual([]);
    // Nothing but the orphans went: no trash left, every other entry still there.
    expect((await fs.readdir(state.dir)).sort()).toEqual(stateBefore.filter((name) => !state.orphans.includes(path.join(state.dir, name))));

    const after = await Promise.all(protectedTrees.map((dir) => hashTree(dir)));
    expect(after).toEqual(before);
    expect(before.every((tree) => tree.size >= 2)).toBe(true);
    expect((await fs.lstat(state.link)).isSymbolicLink()).toBe(true);
    expect(await fs.readlink(state.link)).toBe(state.outside);

    const again = await runCli(["workspaces", "gc", "--legacy", state.dir, "--json"], { env: t.env });
    expect((JSON.parse(again.stdout) as LegacyJson).candidates).toEqual([]);
  });

  it("--yes prints the list first, then a summary: removed N (bytes), skipped M with reasons", async () => {
    const t = await tempDir();
    const dir = path.join(t.dir, "openclaw");
    await writeWorkspace(path.join(dir, "workspace"));
    await writeWorkspace(path.join(dir, "workspace-0123abcd"));
    const result = await runCli(["workspaces", "gc", "--legacy", dir, "--yes"], { env: t.env });
    expect(result.code).toBe(0);
    const listAt = result.stdout.indexOf("1 orphaned workspace directory");
    const summaryAt = result.stdout.indexOf("removed 1 (");
    expect(listAt).toBeGreaterThanOrEqual(0);
    expect(summaryAt).toBeGreaterThan(listAt);
    expect(result.stdout).toContain("(no openclaw.json)");
    await expect(fs.lstat(path.join(dir, "workspace-0123abcd"))).rejects.toMatchObject({ code: "ENOENT" });
    expect((await fs.lstat(path.join(dir, "workspace", "AGENTS.md"))).isFile()).toBe(true);
  });

  it("--dry-run wins over --yes", async () => {
    const t = await tempDir();
    const dir = path.join(t.dir, "openclaw");
    await writeWorkspace(path.join(dir, "workspace-feedface"));
    const result = await runCli(["workspaces", "gc", "--legacy", dir, "--yes", "--dry-run", "--json"], { env: t.env });
    expect(result.code).toBe(0);
    expect((JSON.parse(result.stdout) as LegacyJson).dryRun).toBe(true);
    expect((await fs.lstat(path.join(dir, "workspace-feedface"))).isDirectory()).toBe(true);
  });

  it("protects a workspace under agents.defaults.workspace, a configured workspace reached through a link, and a parent of one", async () => {
    const t = await tempDir();
    const dir = path.join(t.dir, "openclaw");
    await fs.mkdir(dir);
    const team = path.join(dir, "workspace-team");
    await writeWorkspace(path.join(team, "writer"));
    const real = path.join(dir, "workspace-real");
    await writeWorkspace(real);
    const viaLink = path.join(t.dir, "alias");
    await fs.symlink(real, viaLink);
    await writeWorkspace(path.join(dir, "workspace-holder", "inner"));
    await fs.writeFile(
      path.join(dir, "openclaw.json"),
      JSON.stringify({
        agents: {
          defaults: { workspace: team },
          list: [{ id: "main" }, { id: "writer" }, { id: "aliased", workspace: viaLink }, { id: "nested", workspace: path.join(dir, "workspace-holder", "inner") }],
        },
      }),
    );
    const result = await runCli(["workspaces", "gc", "--legacy", dir, "--json"], { env: t.env });
    expect(result.code).toBe(0);
    const scan = JSON.parse(result.stdout) as LegacyJson;
    expect(scan.candidates).toEqual([]);
    const reasons = new Map(scan.skipped.map((skip) => [path.basename(skip.path), skip.reason]));
    expect(reasons.get("workspace-team")).toContain("kept:");
    expect(reasons.get("workspace-real")).toContain('the same directory as the workspace of agent "aliased"');
    expect(reasons.get("workspace-holder")).toContain('contains the workspace of agent "nested"');
  });

  it("a missing directory or an unparsable openclaw.json fails with exit 1 and removes nothing", async () => {
    const t = await tempDir();
    const missing = await runCli(["workspaces", "gc", "--legacy", path.join(t.dir, "nope"), "--yes"], { env: t.env });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^ocgw: Cannot scan the OpenClaw state directory .*nope: it does not exist\. Pass the OpenClaw state directory/);
    const dir = path.join(t.dir, "openclaw");
    await writeWorkspace(path.join(dir, "workspace-cafe"));
    await fs.writeFile(path.join(dir, "openclaw.json"), "{ agents: { list: [ { id: 'a' }, ] ");
    const broken = await runCli(["workspaces", "gc", "--legacy", dir, "--yes"], { env: t.env });
    expect(broken.code).toBe(1);
    expect(broken.stderr).toMatch(/openclaw\.json is not valid JSON5: .* at line 1, column \d+/);
    expect((await fs.lstat(path.join(dir, "workspace-cafe"))).isDirectory()).toBe(true);
  });
});
