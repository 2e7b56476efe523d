/**
 * `ocgw workspaces gc --legacy` against state written by the real OpenClaw 2026.9.6 gateway
 * (`npm run test:openclaw`). Each case hashes every file under its root before and after: the
 * only change allowed is the removal of exactly the directories the case expects.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MockModel, startMockModel } from "./mock-model.ts";
import { type OpenClawRoot, chatOn, hashFiles, ocgw, openClawRoot, report, sandboxDirs, sandboxPerKey, startOpenClaw } from "./openclaw-harness.ts";

interface Entry {
  path: string;
  code: string;
  reason: string;
}
interface Plan {
  candidates: Entry[];
  kept: Entry[];
  removed?: Entry[];
  failed?: unknown[];
  skipped?: unknown[];
}

let model: MockModel;
beforeAll(async () => {
  model = await startMockModel();
});
afterAll(() => model.close());

const gc = (oc: OpenClawRoot, ...extra: string[]) => ocgw(oc, ["workspaces", "gc", "--legacy", oc.stateDir, "--min-age", "0", "--json", ...extra]);
const plan = (stdout: string): Plan => JSON.parse(stdout) as Plan;
const paths = (entries: readonly Entry[] | undefined): string[] => (entries ?? []).map((entry) => entry.path).sort();

/** The hashes of `before` minus everything at or below the removed directories. */
function without(before: Map<string, string>, removed: readonly string[]): Map<string, string> {
  return new Map([...before].filter(([file]) => !removed.some((dir) => file === `${dir}/` || file.startsWith(`${dir}/`))));
}

describe("per-session sandbox workspaces of a real OpenClaw 2026.9.6", () => {
  it("names exactly the deleted sessions' directories, refuses while the gateway runs, and --yes removes exactly those", async () => {
    const oc = await openClawRoot();
    const gateway = await startOpenClaw(oc, model.baseUrl, { defaults: { sandbox: { mode: "non-main", scope: "session" } }, entries: { main: {} } });
    const keys = ["agent:main:s1", "agent:main:s2", "agent:main:s3", "agent:main:s4", "agent:main:s5"];
    const deleted = keys.slice(0, 3);
    const dirs = await sandboxPerKey(oc, (key) => chatOn(gateway.client, [key]), keys);
    for (const key of deleted) await gateway.client.call("sessions.delete", { key });
    expect(await sandboxDirs(oc), "OpenClaw removes none of them on delete").toHaveLength(5);
    const expected = deleted.map((key) => dirs.get(key) as string).sort();

    const refused = await gc(oc);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/An OpenClaw gateway is running on .*lifecycle lock .* is held/);
    const forced = await gc(oc, "--force");
    expect(forced.code).toBe(0);
    expect(paths(plan(forced.stdout).candidates)).toEqual(expected);

    await gateway.stop();
    const before = await hashFiles(oc.root);
    const dry = await gc(oc);
    expect(dry.code).toBe(0);
    const dryPlan = plan(dry.stdout);
    expect(paths(dryPlan.candidates)).toEqual(expected);
    expect(dryPlan.candidates.every((entry) => entry.code === "orphan-sandbox")).toBe(true);
    expect(dryPlan.kept.map((entry) => [entry.path, entry.code]).sort()).toEqual(keys.slice(3).map((key) => [dirs.get(key), "live-session"]).sort());
    expect(await hashFiles(oc.root), "the dry run changes nothing, not even the databases").toEqual(before);

    const yes = await gc(oc, "--yes");
    expect(yes.code).toBe(0);
    expect(paths(plan(yes.stdout).removed)).toEqual(expected);
    expect(await hashFiles(oc.root)).toEqual(without(before, expected));
    report("sandbox sessions (5 made by OpenClaw, 3 deleted)", { planted: keys.length, removed: expected.length, kept: dryPlan.kept.length });
  });
});

describe("agent workspaces of a real OpenClaw 2026.9.6, rosters in both forms", () => {
  /** Copies a directory OpenClaw seeded (files and its `git init`) to `to`. */
  const copySeed = (from: string, to: string) => fs.cp(from, to, { recursive: true, verbatimSymlinks: true });

  it("removes only the pristine workspace-* directories no configured agent owns", async () => {
    const oc = await openClawRoot();
    const writer = path.join(oc.root, "elsewhere", "writer");
    const roster = { main: { default: true }, helper: {}, quiet: {}, writer: { workspace: writer } };
    const first = await startOpenClaw(oc, model.baseUrl, { entries: roster });
    await chatOn(first.client, ["agent:main:main", "agent:helper:main", "agent:writer:main"]);
    await first.stop();
    const helper = path.join(oc.stateDir, "workspace-helper");
    expect((await fs.readdir(helper)).sort(), "what OpenClaw seeded for the agent that ran").toEqual(expect.arrayContaining(["AGENTS.md", "SOUL.md"]));
    await expect(fs.stat(path.join(oc.stateDir, "workspace-quiet")), "an agent that never ran has no workspace yet").rejects.toMatchObject({ code: "ENOENT" });

    const planted = (name: string) => path.join(oc.stateDir, `workspace-${name}`);
    for (const name of ["gone-a", "gone-b", "quiet", "notes", "edited", "foreign"]) await copySeed(helper, planted(name));
    await fs.writeFile(path.join(planted("notes"), "notes.md"), "mine\n");
    await fs.appendFile(path.join(planted("edited"), "SOUL.md"), "\nedited by me\n");
    const outside = path.join(oc.root, "outside-seed");
    await copySeed(helper, outside);
    await fs.symlink(outside, planted("link"));
    const asRoot = process.getuid?.() === 0;
    if (asRoot) await fs.chown(planted("foreign"), 65534, 65534);
    else console.log("workspace-foreign keeps its owner: chown needs root, so only the user-owned cases run here");

    const expectedKept = new Map([
      [helper, "agent-workspace"],
      [planted("quiet"), "agent-workspace"],
      [planted("notes"), "user-files"],
      [planted("edited"), "user-files"],
      [planted("link"), "not-plain"],
      ...(asRoot ? ([[planted("foreign"), "not-plain"]] as const) : []),
    ]);
    const expected = [planted("gone-a"), planted("gone-b"), ...(asRoot ? [] : [planted("foreign")])].sort();
    const before = await hashFiles(oc.root);
    const dry = plan((await gc(oc)).stdout);
    expect(paths(dry.candidates)).toEqual(expected);
    expect(new Map(dry.kept.map((entry) => [entry.path, entry.code]))).toEqual(expectedKept);
    expect(dry.kept.find((entry) => entry.path === planted("notes"))?.reason).toBe("1 file not written by OpenClaw (notes.md)");
    expect(dry.kept.find((entry) => entry.path === planted("edited"))?.reason).toBe("1 file not written by OpenClaw (SOUL.md)");
    const yes = await gc(oc, "--yes");
    expect(paths(plan(yes.stdout).removed)).toEqual(expected);
    expect(await hashFiles(oc.root)).toEqual(without(before, expected));
    report("rosters, agents.entries form", { planted: 7, removed: expected.length, kept: dry.kept.length });

    // The same agents in the older agents.list form, with agents.defaults.workspace set: OpenClaw
    // moves the agents under that root; workspace-helper is still named for a configured agent.
    const team = path.join(oc.root, "team");
    const second = await startOpenClaw(oc, model.baseUrl, { defaults: { workspace: team }, list: [{ id: "main", default: true }, { id: "helper" }, { id: "quiet" }, { id: "writer", workspace: writer }] });
    await chatOn(second.client, ["agent:helper:main"]);
    await second.stop();
    expect(await fs.readdir(path.join(team, "helper")), "OpenClaw resolved helper under agents.defaults.workspace").toEqual(expect.arrayContaining(["AGENTS.md"]));
    await copySeed(path.join(team, "helper"), planted("gone-c"));
    const again = plan((await gc(oc)).stdout);
    expect(paths(again.candidates)).toEqual([planted("gone-c")]);
    expect(again.kept.find((entry) => entry.path === helper)?.code).toBe("agent-workspace");
    const third = await gc(oc, "--yes");
    expect(paths(plan(third.stdout).removed)).toEqual([planted("gone-c")]);
    expect(await fs.readdir(path.join(team, "helper"))).toEqual(expect.arrayContaining(["AGENTS.md"]));
    report("rosters, agents.list form with agents.defaults.workspace", { planted: 1, removed: 1, kept: again.kept.length });
  });
});
