/**
 * `npm run bench`: a report, never a verdict. Every gateway runs in its own process, started
 * through the CLI (`ocgw gateway run`); this process is only the load client and the referee.
 * Prints one table and writes the same rows to bench/results/latest.json (and latest.md). Every
 * ratio compares numbers measured in this same run on this machine; targets are printed beside the
 * numbers with the gap when missed, and nothing fails on them.
 *
 * Environment: BENCH_ONLY=latency,modes,cold-start,memory,collector,security,stream,model,scale,upstream picks sections; the
 * counts are listed with each section (BENCH_PACED, BENCH_SESSIONS, BENCH_ORPHANS, …) and in
 * docs/benchmarks.md. Everything is created under one mkdtemp(os.tmpdir()/ocgw-bench-*) root,
 * removed at the end, on failure and on Ctrl-C; child processes are killed by PID.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { COLD_START_ENV, coldStartSection } from "./cold-start.ts";
import { COLLECTOR_ENV, collectorSection } from "./collector.ts";
import { LATENCY_ENV, latencySection } from "./latency.ts";
import type { SectionContext } from "./lib/context.ts";
import { useSharedCompileCache } from "./lib/gateway-child.ts";
import { interrupted, killAllChildren, onInterrupt } from "./lib/processes.ts";
import { type Row, describeMachine, renderMarkdown, renderTable } from "./lib/report.ts";
import { MEMORY_ENV, memorySection } from "./memory.ts";
import { MODEL_ENV, modelSection } from "./model.ts";
import { MODES_ENV, modesSection } from "./modes.ts";
import { SCALE_ENV, scaleSection } from "./scale.ts";
import { SECURITY_ENV, securitySection } from "./security.ts";
import { STREAM_ENV, streamSection } from "./stream.ts";
import { UPSTREAM_ENV, upstreamSection } from "./upstream.ts";

const SECTIONS: readonly { name: string; title: string; run: (ctx: SectionContext) => Promise<void>; env: Record<string, string> }[] = [
  { name: "latency", title: "1. chat.send latency (gateway child, client in this process)", run: latencySection, env: LATENCY_ENV },
  { name: "modes", title: "2. cost per implicit session, by workspace.implicit mode", run: modesSection, env: MODES_ENV },
  { name: "cold-start", title: "3. cold start to first health", run: coldStartSection, env: COLD_START_ENV },
  { name: "memory", title: "4. gateway RSS, idle and with live sessions", run: memorySection, env: MEMORY_ENV },
  { name: "collector", title: "5. collector: orphans reclaimed vs rm -rf, and acks during a start-up sweep", run: collectorSection, env: COLLECTOR_ENV },
  { name: "security", title: "6. pre-auth flood and token compare", run: securitySection, env: SECURITY_ENV },
  { name: "stream", title: "7. a long reply: event-loop delay and bytes on the wire while it streams", run: streamSection, env: STREAM_ENV },
  { name: "model", title: "8. openai runner against a loopback mock model: the round-trip floor and send → final", run: modelSection, env: MODEL_ENV },
  { name: "scale", title: "9. 100,000 live sessions in one gateway", run: scaleSection, env: SCALE_ENV },
  { name: "upstream", title: "10. side by side with the real OpenClaw 2026.9.6 (BENCH_UPSTREAM=1)", run: upstreamSection, env: UPSTREAM_ENV },
];

const only = (process.env.BENCH_ONLY ?? "")
  .split(",")
  .map((name) => name.trim())
  .filter((name) => name !== "");
for (const name of only) if (!SECTIONS.some((section) => section.name === name)) throw new Error(`BENCH_ONLY: unknown section "${name}"`);
const selected = SECTIONS.filter((section) => only.length === 0 || only.includes(section.name));

const base = await mkdtemp(path.join(tmpdir(), "ocgw-bench-"));
const removeBase = (): Promise<void> => rm(base, { recursive: true, force: true, maxRetries: 3 });
const detach = onInterrupt(removeBase);
useSharedCompileCache(path.join(base, "compile-cache"));
const started = performance.now();
const machine = describeMachine(tmpdir());
const log = (line: string): void => void process.stderr.write(`${line}\n`);
const rows: Row[] = [];
const details: Record<string, unknown> = {};
const failures: { section: string; error: string }[] = [];
try {
  log(`ocgw bench — node ${machine.node}, ${machine.cpus} × ${machine.cpuModel}, ${machine.memGiB} GiB, /tmp on ${machine.tmpFs}, load ${machine.loadAvg}`);
  for (const section of selected) {
    if (interrupted() !== undefined) break;
    const dir = path.join(base, section.name);
    await mkdir(dir);
    const sectionDetails: Record<string, unknown> = {};
    details[section.name] = sectionDetails;
    log(`${section.title}`);
    const t0 = performance.now();
    try {
      await section.run({ dir, rows, details: sectionDetails, log });
    } catch (error) {
      const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
      failures.push({ section: section.name, error: message });
      log(`  section ${section.name} FAILED: ${message}`);
    } finally {
      killAllChildren();
      await rm(dir, { recursive: true, force: true, maxRetries: 3 });
    }
    sectionDetails.durationMs = Math.round(performance.now() - t0);
    log(`  (${((performance.now() - t0) / 1000).toFixed(1)} s)`);
  }
  // Interrupted: the handler removes the root and exits 130; write nothing half-measured.
  if (interrupted() === undefined) {
    const totalMs = performance.now() - started;
    const loadAtEnd = describeMachine(tmpdir()).loadAvg;
    const table = renderTable(rows);
    console.log(`\nocgw bench — node ${machine.node}, ${machine.cpus} × ${machine.cpuModel}, ${machine.memGiB} GiB RAM, ${machine.platform} ${machine.kernel}, /tmp on ${machine.tmpFs}`);
    console.log(`(one run, ${(totalMs / 1000).toFixed(0)} s, load average ${machine.loadAvg} at start, ${loadAtEnd} at the end; medians and tails of this run; ratios within this run; targets are not verdicts)\n`);
    console.log(table);
    const notes = rows.filter((row) => row.note !== undefined);
    if (notes.length > 0) console.log(`\nnotes:\n${notes.map((row) => `  ${row.measure.trim()}: ${row.note ?? ""}`).join("\n")}`);
    const missed = rows.filter((row) => row.met === false);
    console.log(`\ntargets: ${rows.filter((row) => row.met === true).length} met, ${missed.length} missed${missed.map((row) => `\n  missed: ${row.measure} — ${row.gap ?? ""}`).join("")}`);
    for (const failure of failures) console.log(`section ${failure.section} did not complete: ${failure.error.split("\n")[0]}`);
    const env = Object.fromEntries(SECTIONS.flatMap((section) => Object.keys(section.env)).map((name) => [name, process.env[name] ?? null]));
    const results = { when: new Date().toISOString(), machine, loadAtEnd, env, only, totalMs: Math.round(totalMs), rows, details, failures };
    const out = fileURLToPath(new URL("./results/latest.json", import.meta.url));
    await mkdir(path.dirname(out), { recursive: true });
    await writeFile(out, `${JSON.stringify(results, null, 2)}\n`);
    await writeFile(out.replace(/\.json$/, ".md"), `${renderMarkdown(rows)}\n`);
    console.log(`written: ${path.relative(process.cwd(), out)} (and latest.md)`);
    if (failures.length > 0) process.exitCode = 1;
  }
} finally {
  killAllChildren();
  await removeBase();
  detach();
}
