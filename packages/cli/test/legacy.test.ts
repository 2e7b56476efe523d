import { randomBytes } from "node:crypto";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { type OpenClawFixture, addSessions, sandboxNameFor, seedWorkspace, tempOpenClaw, writeConfig } from "../../gateway/test/legacy/openclaw-fixture.ts";
import { hashTree, runCli } from "./helpers.ts";

interface LegacyEntryJson {
  path: string;
  code: string;
  reason: string;
  sizeBytes: number;
}

interface LegacyJson {
  dir: string;
  dryRun: boolean;
  agents: { id: string; workspace: string }[];
  candidates: LegacyEntryJson[];
  kept: LegacyEntryJson[];
  byCode: Record<string, { count: number; bytes: number }>;
  totalBytes: number;
  removed?: LegacyEntryJson[];
  removedBytes?: number;
  skipped?: { path: string; reason: string }[];
  failed?: { path: string; reason: string }[];
}

/** ~/.openclaw as OpenClaw leaves it: agents that must survive, 100 leaked workspace-* and 20 leaked sandboxes, plus lookalikes to keep. */
async function leakedState(fx: OpenClawFixture): Promise<{ orphans: string[]; keep: string[]; outside: string }> {
  await writeConfig(fx, `// OpenClaw config (JSON5)\n{ agents: { defaults: { sandbox: { mode: "non-main", scope: "session" } }, entries: { main: { default: true }, ops: {}, research: { workspace: "~/research" } } } }\n`);
  const main = await seedWorkspace(fx, path.join(fx.stateDir, "workspace"), { git: true });
  const keep = [main, await seedWorkspace(fx, path.join(fx.stateDir, "workspace-ops")), await seedWorkspace(fx, path.join(fx.home, "research"))];
  const orphans: string[] = [];
  for (let i = 0; i < 100; i++) orphans.push(await seedWorkspace(fx, path.join(fx.stateDir, `workspace-${randomBytes(6).toString("hex")}`), { git: i % 10 === 0 }));
  const live = Array.from({ length: 10 }, (_, i) => `agent:main:live-${i}`);
  await addSessions(fx, "main", [...live.map((key) => ({ key })), { key: "agent:main:deleted-0", valid: -1 as const }]);
  for (const key of live) keep.push(await seedWorkspace(fx, path.join(fx.stateDir, "sandboxes", sandboxNameFor(key, main))));
  for (let i = 0; i < 20; i++) orphans.push(await seedWorkspace(fx, path.join(fx.stateDir, "sandboxes", sandboxNameFor(`agent:main:deleted-${i}`, main))));
  const withNotes = await seedWorkspace(fx, path.join(fx.stateDir, "workspace-notes"));
  await fs.writeFile(path.join(withNotes, "notes.md"), "mine\n");
  keep.push(withNotes);
  const outside = path.join(fx.base, "outside");
  await fs.mkdir(outside);
  await fs.writeFile(path.join(outside, "precious.txt"), "do not delete\n");
  await fs.symlink(outside, path.join(fx.stateDir, "workspace-link"));
  await fs.writeFile(path.join(fx.stateDir, "workspace-notes.txt"), "a file");
  return { orphans: orphans.sort(), keep, outside };
}

const legacyArgs = (fx: OpenClawFixture, ...extra: string[]) => ["workspaces", "gc", "--legacy", fx.stateDir, "--min-age", "0", ...extra];

describe("ocgw workspaces gc --legacy", () => {
  it("lists exactly the 120 proven orphans, removes nothing without --yes, then removes exactly those and nothing else", async () => {
    const fx = await tempOpenClaw();
    const state = await leakedState(fx);
    const before = await Promise.all([...state.keep, state.outside].map((dir) => hashTree(dir)));
    const entriesBefore = (await fs.readdir(fx.stateDir)).sort();

    const dry = await runCli(legacyArgs(fx, "--json"), { env: fx.env });
    expect(dry.code).toBe(0);
    const plan = JSON.parse(dry.stdout) as LegacyJson;
    expect(plan.dryRun).toBe(true);
    expect(plan.candidates.map((entry) => entry.path).sort()).toEqual(state.orphans);
    expect(plan.byCode).toMatchObject({ "orphan-workspace": { count: 100 }, "orphan-sandbox": { count: 20 }, "live-session": { count: 10 }, "agent-workspace": { count: 1 }, "user-files": { count: 1 }, "not-plain": { count: 2 } });
    const kept = new Map(plan.kept.map((entry) => [path.basename(entry.path), entry.reason]));
    expect(kept.get("workspace-link")).toBe("a symlink: never followed or removed");
    expect(kept.get("workspace-ops")).toBe('a workspace of agent "ops"');
    expect(kept.get("workspace-notes")).toBe("1 file not written by OpenClaw (notes.md)");
    expect((await fs.readdir(fx.stateDir)).sort()).toEqual(entriesBefore);

    const human = await runCli(legacyArgs(fx), { env: fx.env });
    expect(human.code).toBe(0);
    expect(human.stdout).toContain(`Would remove 120 directories (`);
    expect(human.stdout).toMatch(/orphan-sandbox\s+20\s+/);
    expect(human.stdout).toContain("Dry run: nothing removed. To remove exactly these 120");
    expect(await fs.readdir(path.join(fx.stateDir, "sandboxes"))).toHaveLength(30);

    const removal = await runCli(legacyArgs(fx, "--yes", "--json"), { env: fx.env });
    expect(removal.code).toBe(0);
    const result = JSON.parse(removal.stdout) as LegacyJson;
    expect(result.dryRun).toBe(false);
    expect((result.removed ?? []).map((entry) => entry.path).sort()).toEqual(state.orphans);
    expect(result.failed).toEqual([]);
    expect(result.removedBytes).toBe(plan.totalBytes);
    for (const orphan of state.orphans) await expect(fs.lstat(orphan)).rejects.toMatchObject({ code: "ENOENT" });
    expect((await fs.readdir(fx.stateDir)).sort()).toEqual(entriesBefore.filter((name) => !state.orphans.includes(path.join(fx.stateDir, name))));
    expect(await Promise.all([...state.keep, state.outside].map((dir) => hashTree(dir)))).toEqual(before);

    const again = await runCli(legacyArgs(fx, "--json"), { env: fx.env });
    expect((JSON.parse(again.stdout) as LegacyJson).candidates).toEqual([]);
  });

  it("--yes prints the plan first, then removed N (bytes), skipped and failed", async () => {
    const fx = await tempOpenClaw();
    await seedWorkspace(fx, path.join(fx.stateDir, "workspace-0123abcd"));
    const result = await runCli(legacyArgs(fx, "--yes"), { env: fx.env });
    expect(result.code).toBe(0);
    const listAt = result.stdout.indexOf("Removing 1 directory");
    const summaryAt = result.stdout.indexOf("removed 1 (");
    expect(listAt).toBeGreaterThanOrEqual(0);
    expect(summaryAt).toBeGreaterThan(listAt);
    expect(result.stdout).toContain("(none: the implicit main agent)");
    await expect(fs.lstat(path.join(fx.stateDir, "workspace-0123abcd"))).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("the default minimum age keeps what changed in the last hour; --dry-run wins over --yes", async () => {
    const fx = await tempOpenClaw();
    await seedWorkspace(fx, path.join(fx.stateDir, "workspace-feedface"));
    const fresh = await runCli(["workspaces", "gc", "--legacy", fx.stateDir, "--yes", "--json"], { env: fx.env });
    expect(fresh.code).toBe(0);
    expect((JSON.parse(fresh.stdout) as LegacyJson).kept.map((entry) => entry.code)).toEqual(["too-young"]);
    const dry = await runCli(legacyArgs(fx, "--yes", "--dry-run", "--json"), { env: fx.env });
    expect((JSON.parse(dry.stdout) as LegacyJson).dryRun).toBe(true);
    expect((await fs.lstat(path.join(fx.stateDir, "workspace-feedface"))).isDirectory()).toBe(true);
  });

  it("a running OpenClaw gateway (its lock, held by a live pid) refuses with exit 1 unless --force", async () => {
    const fx = await tempOpenClaw();
    await seedWorkspace(fx, path.join(fx.stateDir, "workspace-cafe"));
    const lockDir = path.join(fx.stateDir, "tmp", `openclaw-${process.getuid?.() ?? 0}`);
    await fs.mkdir(lockDir, { recursive: true });
    await fs.writeFile(path.join(lockDir, "gateway.state.lock"), JSON.stringify({ pid: process.pid, ownerId: "t", createdAt: new Date().toISOString() }));
    const refused = await runCli(legacyArgs(fx, "--yes"), { env: fx.env });
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^ocgw: An OpenClaw gateway is running on .* \(gateway lock .* pid \d+ is alive\)\. Stop the OpenClaw gateway/);
    expect((await fs.lstat(path.join(fx.stateDir, "workspace-cafe"))).isDirectory()).toBe(true);
    const forced = await runCli(legacyArgs(fx, "--yes", "--force"), { env: fx.env });
    expect(forced.code).toBe(0);
    expect(forced.stdout).toContain("WARNING: an OpenClaw gateway is running");
    await expect(fs.lstat(path.join(fx.stateDir, "workspace-cafe"))).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("bad input: a missing dir or an unreadable config is exit 1, a bad flag value exit 2; nothing is removed", async () => {
    const fx = await tempOpenClaw();
    const missing = await runCli(["workspaces", "gc", "--legacy", path.join(fx.base, "nope"), "--yes"], { env: fx.env });
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/^ocgw: Cannot scan the OpenClaw state directory .*nope: it does not exist\. Pass the OpenClaw state directory/);
    await seedWorkspace(fx, path.join(fx.stateDir, "workspace-cafe"));
    await writeConfig(fx, "{ agents: { entries: { a: {}, } ");
    const broken = await runCli(legacyArgs(fx, "--yes"), { env: fx.env });
    expect(broken.code).toBe(1);
    expect(broken.stderr).toMatch(/openclaw\.json is not valid JSON5: .* at line 1, column \d+/);
    await writeConfig(fx, `{ agents: { defaults: { sandbox: { mode: "sometimes" } } } }`);
    const odd = await runCli(legacyArgs(fx, "--yes"), { env: fx.env });
    expect(odd.code).toBe(1);
    expect(odd.stderr).toContain("agents.defaults.sandbox.mode");
    for (const bad of [["--min-age", "soon"], ["--idle-days", "0"]]) {
      const usage = await runCli(["workspaces", "gc", "--legacy", fx.stateDir, ...bad], { env: fx.env });
      expect(usage.code).toBe(2);
      expect(usage.stderr).toContain(bad[0]);
    }
    expect((await fs.lstat(path.join(fx.stateDir, "workspace-cafe"))).isDirectory()).toBe(true);
  });
});
