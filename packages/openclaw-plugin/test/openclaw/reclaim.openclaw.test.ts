/**
 * `@ocgw/openclaw-plugin` inside the real OpenClaw 2026.9.6 (`npm run test:openclaw`), loaded
 * from this package's built dist/ through `plugins.load.paths`, with the mock model and sandbox
 * `{ mode: "non-main", scope: "session" }`. Which directory belongs to which session is seen by
 * watching the sandboxes dir, never computed by the code under test.
 */
import { readFile, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type MockModel, startMockModel } from "../../../gateway/test/openclaw/mock-model.ts";
import { chatOn, hashFiles, openClawRoot, report, sandboxDirs, sandboxPerKey } from "../../../gateway/test/openclaw/openclaw-harness.ts";
import { buildPlugin, eventually, exists, pluginLog, startSandboxed, withPlugin } from "./harness.ts";

/** VmRSS of a live process, in MB (Linux /proc). */
async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, "utf8");
  const kb = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1]);
  expect(kb, `VmRSS of ${pid}`).toBeGreaterThan(0);
  return kb / 1024;
}

let model: MockModel;
beforeAll(async () => {
  await buildPlugin();
  model = await startMockModel();
});
// Unset when the build in beforeAll failed.
afterAll(() => (model as MockModel | undefined)?.close());

/** What OpenClaw itself rewrites while it runs: its databases, session archives, logs and temp files (plugin captures, locks). */
const OPENCLAW_OWN = /^(tmp|state|logs)(\/|$)|^agents\/[^/]+\/(agent|sessions)(\/|$)/;

/** `tmp: 812, state: 4` — counts by top-level directory. */
function summarize(files: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const file of files) counts.set(file.split("/")[0] ?? file, (counts.get(file.split("/")[0] ?? file) ?? 0) + 1);
  return [...counts].map(([dir, count]) => `${dir}: ${count}`).join(", ");
}

/** The hashes of `before` below `dir` (the sandboxes root), minus everything at or below the removed directories. */
function below(hashes: Map<string, string>, dir: string, removed: readonly string[] = []): Map<string, string> {
  return new Map([...hashes].filter(([file]) => file.startsWith(`${dir}/`) && !removed.some((gone) => file === `${gone}/` || file.startsWith(`${gone}/`))));
}

describe("the plugin in a real OpenClaw 2026.9.6", () => {
  it("releases each deleted session's sandbox directory within seconds, keeps a reset session's, and leaves OpenClaw working", async () => {
    const oc = await openClawRoot();
    const gateway = await startSandboxed(oc, model.baseUrl, withPlugin());
    const keys = ["agent:main:p1", "agent:main:p2", "agent:main:p3", "agent:main:p4", "agent:main:p5", "agent:main:p6"];
    const dirs = await sandboxPerKey(oc, (key) => chatOn(gateway.client, [key]), keys);
    const deleted = keys.slice(0, 3);
    const gone = deleted.map((key) => dirs.get(key) as string);
    const sandboxes = path.join(oc.stateDir, "sandboxes");
    const before = await hashFiles(oc.stateDir);

    const deleting = performance.now();
    for (const key of deleted) await gateway.client.call("sessions.delete", { key });
    const replied = performance.now();
    const removed = await eventually(async () => !(await Promise.all(gone.map(exists))).some(Boolean), 10_000);
    expect(removed, `the deleted sessions' directories are gone within 10 s\n${(await pluginLog(oc)).join("\n")}`).toBe(true);
    const releases = (await pluginLog(oc)).filter((line) => line.startsWith("ocgw-reclaim: session_end deleted")).map((line) => line.replace(/^.*( in \d+ ms)$/, "$1").trim());
    console.log(`[plugin] 3 sessions.delete answered in ${Math.round(replied - deleting)} ms; all 3 directories gone ${Math.round(performance.now() - replied)} ms after the last answer; each release: ${releases.join(", ")}`);

    await gateway.client.call("sessions.reset", { key: "agent:main:p4" });
    await chatOn(gateway.client, ["agent:main:p5"]);
    const health = (await gateway.client.call("health", {})) as { ok?: unknown };
    expect(health.ok, "health stays ok").toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 2_000));
    expect(await sandboxDirs(oc)).toEqual(keys.slice(3).map((key) => dirs.get(key)).sort());
    const log = await pluginLog(oc);
    for (const dir of gone) expect(log.some((line) => line.startsWith(`ocgw-reclaim: removed ${dir} (orphan-sandbox:`)), `a line for ${dir}`).toBe(true);
    expect(log.filter((line) => line.startsWith("ocgw-reclaim: removed"))).toHaveLength(3);
    await gateway.stop();

    // p5's second turn is OpenClaw's own change to its directory (setup done: BOOTSTRAP.md goes), so p5 is compared by presence only.
    const p5 = dirs.get("agent:main:p5") as string;
    const after = await hashFiles(oc.stateDir);
    expect(below(after, sandboxes, [p5]), "every other sandbox directory is byte-identical").toEqual(below(before, sandboxes, [...gone, p5]));
    const added = [...after.keys()].filter((file) => !before.has(file)).map((file) => path.relative(oc.stateDir, file));
    expect(added.filter((file) => file.includes(".trash-") || file.startsWith("sandboxes/")), "the plugin leaves no trash and adds nothing to sandboxes/").toEqual([]);
    const changed = [...before].filter(([file]) => !file.startsWith(`${sandboxes}/`) && after.get(file) !== before.get(file)).map(([file]) => path.relative(oc.stateDir, file));
    const foreign = [...changed, ...added].filter((file) => !OPENCLAW_OWN.test(file));
    expect(foreign, "outside sandboxes/, nothing but OpenClaw's own stores, logs and temp files changed").toEqual([]);
    console.log(`[plugin] OpenClaw's own changes outside sandboxes/: ${changed.length} changed, ${added.length} added (${summarize([...changed, ...added])})`);
    report("plugin: session_end deleted (6 made by OpenClaw, 3 deleted, 1 reset)", { planted: keys.length, removed: gone.length, kept: keys.length - gone.length });
  });

  it("sweeps, after the next start, the directories of sessions deleted while it was not loaded; keeps one with a user file; a dry run removes nothing", async () => {
    const oc = await openClawRoot();
    const bare = await startSandboxed(oc, model.baseUrl);
    const keys = ["agent:main:q1", "agent:main:q2", "agent:main:q3"];
    const dirs = await sandboxPerKey(oc, (key) => chatOn(bare.client, [key]), keys);
    const [orphan, withNotes, live] = keys.map((key) => dirs.get(key) as string) as [string, string, string];
    await writeFile(path.join(withNotes, "notes.md"), "mine\n");
    for (const key of ["agent:main:q1", "agent:main:q2"]) await bare.client.call("sessions.delete", { key });
    await bare.stop();
    const sandboxes = path.join(oc.stateDir, "sandboxes");
    const planted = await hashFiles(sandboxes);

    const sweep = { sweeper: { minAgeMinutes: 0 } };
    const dry = await startSandboxed(oc, model.baseUrl, withPlugin({ ...sweep, dryRun: true }));
    const swept = (line: string) => /^ocgw-reclaim: sweep: \d+ checked/.test(line);
    expect(await eventually(async () => (await pluginLog(oc)).some(swept), 20_000), "a first sweep pass after start").toBe(true);
    const q4 = await sandboxPerKey(oc, (key) => chatOn(dry.client, [key]), ["agent:main:q4"]);
    await dry.client.call("sessions.delete", { key: "agent:main:q4" });
    const wouldQ4 = `ocgw-reclaim: would remove ${q4.get("agent:main:q4")} (orphan-sandbox:`;
    expect(await eventually(async () => (await pluginLog(oc)).some((line) => line.startsWith(wouldQ4)), 10_000), "the dry run plans the deleted session's directory").toBe(true);
    await dry.stop();
    const dryLog = await pluginLog(oc);
    expect(dryLog.some((line) => line.startsWith(`ocgw-reclaim: would remove ${orphan} (orphan-sandbox:`) && line.includes("dry run")), dryLog.join("\n")).toBe(true);
    expect(dryLog.filter((line) => line.startsWith("ocgw-reclaim: removed")), "a dry run removes nothing").toEqual([]);
    expect(below(await hashFiles(sandboxes), sandboxes, [q4.get("agent:main:q4") as string]), "not a byte changed").toEqual(below(planted, sandboxes));

    const real = await startSandboxed(oc, model.baseUrl, withPlugin(sweep));
    const bothGone = async () => !(await exists(orphan)) && !(await exists(q4.get("agent:main:q4") as string));
    expect(await eventually(bothGone, 20_000), `the sweep reclaims both orphans\n${(await pluginLog(oc)).join("\n")}`).toBe(true);
    await chatOn(real.client, ["agent:main:q3"]);
    await real.stop();
    const log = (await pluginLog(oc)).slice(dryLog.length);
    expect(log.some((line) => line.startsWith(`ocgw-reclaim: kept ${withNotes} (user-files: 1 file not written by OpenClaw (notes.md);`)), log.join("\n")).toBe(true);
    expect(await sandboxDirs(oc)).toEqual([withNotes, live].sort());
    expect(await readFile(path.join(withNotes, "notes.md"), "utf8")).toBe("mine\n");
    report("plugin: sweep after restart (3 made, 2 deleted unloaded, 1 with a user file; 1 deleted under a dry run)", { planted: 4, removed: 2, kept: 2 });
  });

  it("costs little: OpenClaw's start time and RSS with and without the plugin, in the same run", async () => {
    const samples: Record<"without" | "with", { startMs: number; rssMb: number }[]> = { without: [], with: [] };
    for (let round = 0; round < 3; round++) {
      for (const variant of ["without", "with"] as const) {
        const oc = await openClawRoot();
        const started = performance.now();
        const gateway = await startSandboxed(oc, model.baseUrl, variant === "with" ? withPlugin() : {});
        const startMs = performance.now() - started;
        // The plugin's first sweep runs 2 s after its service starts; both variants wait the same.
        await new Promise((resolve) => setTimeout(resolve, 5_000));
        const rss = await rssMb(gateway.pid);
        const log = await pluginLog(oc);
        await gateway.stop();
        expect(log.some((line) => line.startsWith("ocgw-reclaim: watching")), `the plugin is loaded only ${variant === "with" ? "with" : "without"} it`).toBe(variant === "with");
        if (variant === "with") expect(log.some((line) => line.startsWith("ocgw-reclaim: sweep: ")), "its first sweep ran").toBe(true);
        samples[variant].push({ startMs, rssMb: rss });
      }
    }
    const med = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)] as number;
    const line = (variant: "without" | "with") => `start ${Math.round(med(samples[variant].map((s) => s.startMs)))} ms, RSS ${med(samples[variant].map((s) => s.rssMb)).toFixed(1)} MB`;
    console.log(`[plugin cost] medians of 3 alternating starts: without the plugin ${line("without")}; with it ${line("with")} (all: ${JSON.stringify(samples)})`);
  });
});
