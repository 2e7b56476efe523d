/**
 * `npm run soak`: opt-in, bounded in time. Implicit sessions through a gateway child (started
 * with the CLI, idleTtlMs 0) from this process as the client, SOAK_INFLIGHT at a time, in a mix of
 * endings: final (70%), error (`/echo:error`, 10%), abort (`/echo:sleep 2000` + chat.abort, 10%)
 * and timeout (`/echo:sleep 2000` with timeoutMs 20, 10%). The gateway's RSS is sampled every
 * SOAK_SAMPLE_EVERY sessions. After a graceful stop it checks: no lease directory or trash left
 * in the root, the ledger consistent (read-only with node:sqlite: one row per session, every row
 * released), every session ended the way it should, and the RSS slope after warm-up.
 *
 * Environment: SOAK_SESSIONS (default 100000), SOAK_MAX_MS (default 1200000 = 20 min; whichever
 * comes first), SOAK_INFLIGHT (64), SOAK_SAMPLE_EVERY (1000), SOAK_GC_MS (the gateway's periodic
 * collector during the soak, default 60000; 0 = off), SOAK_WARMUP_PERCENT (50: samples before this
 * share of the sessions are left out of the slope, because V8 grows its young generation in steps
 * during the first ~10,000 sessions), SOAK_SLOPE_MAX_KB (128: the slope verdict's bound, KB per
 * 1,000 sessions). Exits 1 when a check fails.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { fileURLToPath } from "node:url";
import { type BenchClient, chatSend, connectClient, type EndState } from "./lib/client.ts";
import { diskUsage, rootEntries } from "./lib/fs-usage.ts";
import { startGatewayChild, useSharedCompileCache } from "./lib/gateway-child.ts";
import { interrupted, killAllChildren, onInterrupt } from "./lib/processes.ts";
import { describeMachine, format } from "./lib/report.ts";
import { envInt, leastSquares, sleep, stats } from "./lib/stats.ts";

const TOTAL = envInt("SOAK_SESSIONS", 100_000);
const MAX_MS = envInt("SOAK_MAX_MS", 20 * 60_000);
const IN_FLIGHT = Math.max(1, envInt("SOAK_INFLIGHT", 64));
const SAMPLE_EVERY = Math.max(1, envInt("SOAK_SAMPLE_EVERY", 1000));
const GC_MS = envInt("SOAK_GC_MS", 60_000);
const WARMUP_PERCENT = Math.min(90, envInt("SOAK_WARMUP_PERCENT", 50));
const SLOPE_MAX_KB = envInt("SOAK_SLOPE_MAX_KB", 128);

type Kind = "final" | "error" | "abort" | "timeout";
const KINDS: readonly Kind[] = ["final", "final", "final", "final", "final", "final", "final", "error", "abort", "timeout"];
const EXPECTED: Record<Kind, { state: EndState; errorKind?: string }> = {
  final: { state: "final" },
  error: { state: "error", errorKind: "unknown" },
  abort: { state: "aborted" },
  timeout: { state: "error", errorKind: "timeout" },
};

interface Tally {
  started: number;
  refused: number;
  completed: number;
  unexpected: number;
  transportErrors: number;
  byKind: Record<Kind, number>;
  firstProblems: string[];
}

async function oneSession(client: BenchClient, i: number, tally: Tally, acks: number[]): Promise<void> {
  const kind = KINDS[i % KINDS.length] as Kind;
  const sessionKey = `soak-${i}`;
  const idempotencyKey = `soak-${i}`;
  const message = kind === "final" ? `soak ${i}` : kind === "error" ? `/echo:error soak ${i}` : `/echo:sleep 2000 soak ${i}`;
  const sent = await chatSend(client, { sessionKey, message, idempotencyKey, ...(kind === "timeout" ? { timeoutMs: 20 } : {}) }, 30_000);
  if (!sent.ack.ok || (sent.ack.payload as { status?: string } | undefined)?.status !== "started") {
    tally.refused += 1;
    if (tally.firstProblems.length < 10) tally.firstProblems.push(`${sessionKey}: send ${JSON.stringify(sent.ack.error ?? sent.ack.payload)}`);
    return;
  }
  tally.started += 1;
  acks.push(sent.ack.at - sent.t0);
  if (kind === "abort") {
    const aborted = await client.request("chat.abort", { sessionKey, runId: idempotencyKey }, 30_000);
    if (!aborted.ok && tally.firstProblems.length < 10) tally.firstProblems.push(`${sessionKey}: abort ${JSON.stringify(aborted.error)}`);
  }
  const end = await sent.end;
  const expected = EXPECTED[kind];
  if (end.state !== expected.state || (expected.errorKind !== undefined && end.errorKind !== expected.errorKind)) {
    tally.unexpected += 1;
    if (tally.firstProblems.length < 10) tally.firstProblems.push(`${sessionKey} (${kind}): ended ${end.state}/${end.errorKind ?? ""}`);
  }
  tally.byKind[kind] += 1;
}

/** The kind a session key (`agent:main:soak-<i>`) was sent as. */
function kindOfKey(key: string): Kind | undefined {
  const i = Number(/soak-(\d+)$/.exec(key)?.[1]);
  return Number.isInteger(i) ? KINDS[i % KINDS.length] : undefined;
}

function summarizeKinds(keys: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const key of keys) counts.set(String(kindOfKey(key)), (counts.get(String(kindOfKey(key))) ?? 0) + 1);
  return counts.size === 0 ? "none" : [...counts].map(([kind, n]) => `${n} ${kind}`).join(", ");
}

interface LedgerCheck {
  rows: number;
  distinctSessions: number;
  byState: Record<string, number>;
  byOutcome: Record<string, number>;
  sessions: number;
  runs: Record<string, number>;
  /** Session keys with no lease row: runs aborted before they acquired a workspace. */
  withoutLease: string[];
}

function readLedger(file: string): LedgerCheck {
  const db = new DatabaseSync(file, { readOnly: true });
  try {
    const count = (sql: string): number => Number((db.prepare(sql).get() as { n: number | bigint }).n);
    const groups = (sql: string): Record<string, number> =>
      Object.fromEntries((db.prepare(sql).all() as { k: string | null; n: number | bigint }[]).map((row) => [String(row.k), Number(row.n)]));
    return {
      rows: count("SELECT count(*) AS n FROM leases"),
      distinctSessions: count("SELECT count(DISTINCT session_key) AS n FROM leases"),
      byState: groups("SELECT state AS k, count(*) AS n FROM leases GROUP BY state"),
      byOutcome: groups("SELECT outcome AS k, count(*) AS n FROM leases GROUP BY outcome"),
      sessions: count("SELECT count(*) AS n FROM sessions"),
      runs: groups("SELECT status AS k, count(*) AS n FROM runs GROUP BY status"),
      withoutLease: (db.prepare("SELECT session_key AS k FROM sessions WHERE session_key NOT IN (SELECT session_key FROM leases)").all() as { k: string }[]).map((row) => row.k),
    };
  } finally {
    db.close();
  }
}

const base = await mkdtemp(path.join(tmpdir(), "ocgw-bench-soak-"));
const removeBase = (): Promise<void> => rm(base, { recursive: true, force: true, maxRetries: 3 });
const detach = onInterrupt(removeBase);
useSharedCompileCache(path.join(base, "compile-cache"));
const machine = describeMachine(tmpdir());
const log = (line: string): void => void process.stderr.write(`${line}\n`);
try {
  log(`ocgw soak — up to ${TOTAL.toLocaleString("en-US")} sessions or ${(MAX_MS / 60_000).toFixed(1)} min, ${IN_FLIGHT} in flight, RSS every ${SAMPLE_EVERY} sessions, collector every ${GC_MS} ms`);
  // One start first, so the gateway under test finds Node's compile cache warm, as every start after the first does.
  await (await startGatewayChild({ dir: path.join(base, "prime"), implicit: "ephemeral", readyTimeoutMs: 60_000 })).stop();
  const gateway = await startGatewayChild({ dir: path.join(base, "gateway"), implicit: "ephemeral", idleTtlMs: 0, gcOnStartup: false, gcIntervalMs: GC_MS, readyTimeoutMs: 60_000 });
  const tally: Tally = { started: 0, refused: 0, completed: 0, unexpected: 0, transportErrors: 0, byKind: { final: 0, error: 0, abort: 0, timeout: 0 }, firstProblems: [] };
  const acks: number[] = [];
  const samples: { sessions: number; rssKb: number; ms: number }[] = [];
  const started = performance.now();
  let stop: Awaited<ReturnType<typeof gateway.stop>> | undefined;
  let dispatched = 0;
  try {
    await sleep(500);
    samples.push({ sessions: 0, rssKb: (await gateway.rss()).rssKb, ms: 0 });
    const client = await connectClient(gateway.url, gateway.token);
    let broken = false;
    let lastReport = started;
    const worker = async (): Promise<void> => {
      while (!broken && dispatched < TOTAL && performance.now() - started < MAX_MS) {
        const i = dispatched++;
        try {
          await oneSession(client, i, tally, acks);
        } catch (error) {
          tally.transportErrors += 1;
          if (tally.firstProblems.length < 10) tally.firstProblems.push(`soak-${i}: ${error instanceof Error ? error.message : String(error)}`);
          if (tally.transportErrors > 100) broken = true;
        }
        tally.completed += 1;
        if (tally.completed % SAMPLE_EVERY === 0) {
          const rss = await gateway.rss().catch(() => undefined);
          if (rss !== undefined) samples.push({ sessions: tally.completed, rssKb: rss.rssKb, ms: performance.now() - started });
        }
        if (performance.now() - lastReport > 10_000) {
          lastReport = performance.now();
          const last = samples.at(-1);
          log(`  ${tally.completed.toLocaleString("en-US")} sessions, ${((tally.completed / (lastReport - started)) * 1000).toFixed(0)}/s, RSS ${last === undefined ? "?" : format(last.rssKb / 1024, "MB")}`);
        }
      }
    };
    try {
      await Promise.all(Array.from({ length: IN_FLIGHT }, () => worker()));
    } finally {
      await client.close();
    }
    await sleep(500);
    samples.push({ sessions: tally.completed, rssKb: (await gateway.rss()).rssKb, ms: performance.now() - started });
  } finally {
    stop = await gateway.stop(120_000);
  }
  // Interrupted: the handler removes the root and exits 130; nothing is checked or written.
  if (interrupted() !== undefined) await new Promise<never>(() => undefined);
  const elapsedMs = performance.now() - started;

  const root = await rootEntries(gateway.root);
  const ledger = readLedger(path.join(gateway.stateDir, "ocgw.sqlite"));
  const stateUsage = await diskUsage([gateway.stateDir]);
  const warm = samples.filter((sample) => sample.sessions >= (tally.completed * WARMUP_PERCENT) / 100 && sample.sessions > 0);
  const fit = leastSquares(warm.map((sample) => ({ x: sample.sessions, y: sample.rssKb })));
  const slopePer1k = fit.slope * 1000;
  const rssValues = samples.map((sample) => sample.rssKb);
  const ackStats = stats(acks);

  const checks: { name: string; ok: boolean; detail: string }[] = [
    {
      name: "every session ended as expected",
      ok: tally.unexpected === 0 && tally.transportErrors === 0 && tally.refused === 0 && tally.completed > 0,
      detail: `${tally.completed} sessions: ${tally.byKind.final} final, ${tally.byKind.error} error, ${tally.byKind.abort} aborted, ${tally.byKind.timeout} timeout; ${tally.unexpected} unexpected, ${tally.refused} refused, ${tally.transportErrors} transport errors`,
    },
    {
      name: "root: no lease directory or trash left",
      ok: root.leases === 0 && root.trash === 0 && root.other.length === 0,
      detail: `${root.leases} lease dirs, ${root.trash} trash, ${root.other.length} other; bookkeeping: ${root.bookkeeping.join(", ") || "none"}`,
    },
    {
      // A run aborted before its turn to acquire makes no workspace, so its session has no lease row.
      name: "ledger: one row per session that acquired (all but runs aborted first), every row released",
      ok:
        ledger.rows === ledger.distinctSessions &&
        ledger.rows + ledger.withoutLease.length === tally.started &&
        ledger.withoutLease.every((key) => kindOfKey(key) === "abort") &&
        (ledger.byState.released ?? 0) === ledger.rows &&
        ledger.sessions === tally.started,
      detail: `${ledger.rows} rows for ${ledger.distinctSessions} sessions (${tally.started} started, ${ledger.sessions} session rows, ${ledger.withoutLease.length} without a lease: ${summarizeKinds(ledger.withoutLease)}); states ${JSON.stringify(ledger.byState)}; outcomes ${JSON.stringify(ledger.byOutcome)}`,
    },
    {
      name: `RSS slope after warm-up ≤ ${SLOPE_MAX_KB} KB per 1,000 sessions`,
      ok: warm.length >= 3 && slopePer1k <= SLOPE_MAX_KB,
      detail: `${Number.isNaN(slopePer1k) ? "n/a" : slopePer1k.toFixed(1)} KB per 1,000 sessions over ${warm.length} samples (sessions ${warm[0]?.sessions ?? "?"}–${warm.at(-1)?.sessions ?? "?"}); RSS ${format(Math.min(...rssValues) / 1024, "MB")}–${format(Math.max(...rssValues) / 1024, "MB")}`,
    },
    {
      name: "graceful stop",
      ok: stop.code === 0 && !stop.forced,
      detail: `exit ${stop.code} in ${format(stop.ms, "ms")}${stop.forced ? " (SIGKILLed)" : ""}`,
    },
  ];
  if (checks.some((check) => !check.ok)) process.exitCode = 1;

  console.log(`\nocgw soak — node ${machine.node}, ${machine.cpus} × ${machine.cpuModel}, ${machine.memGiB} GiB RAM, /tmp on ${machine.tmpFs}`);
  console.log(`${tally.completed.toLocaleString("en-US")} sessions in ${(elapsedMs / 1000).toFixed(1)} s (${((tally.completed / elapsedMs) * 1000).toFixed(0)}/s), ${IN_FLIGHT} in flight`);
  console.log(`chat.send ack p50 ${format(ackStats.p50, "ms")}, p95 ${format(ackStats.p95, "ms")}, p99 ${format(ackStats.p99, "ms")}, max ${format(ackStats.max, "ms")}`);
  console.log(`state dir after the stop: ${format(stateUsage.bytes, "B")} (${format(stateUsage.bytes / Math.max(1, tally.started), "B")} per session)`);
  console.log(`RSS samples (sessions → MB): ${samples.map((sample) => `${sample.sessions}→${(sample.rssKb / 1024).toFixed(0)}`).join(" ")}`);
  for (const problem of tally.firstProblems) console.log(`  problem: ${problem}`);
  console.log("");
  for (const check of checks) console.log(`${check.ok ? "PASS" : "FAIL"}  ${check.name}: ${check.detail}`);
  const out = fileURLToPath(new URL("./results/soak-latest.json", import.meta.url));
  await mkdir(path.dirname(out), { recursive: true });
  await writeFile(
    out,
    `${JSON.stringify(
      {
        when: new Date().toISOString(),
        machine,
        settings: { TOTAL, MAX_MS, IN_FLIGHT, SAMPLE_EVERY, GC_MS, WARMUP_PERCENT, SLOPE_MAX_KB },
        elapsedMs: Math.round(elapsedMs),
        tally,
        ack: ackStats,
        samples,
        slopeKbPer1k: slopePer1k,
        ledger,
        root,
        stateBytes: stateUsage.bytes,
        stop,
        checks,
      },
      null,
      2,
    )}\n`,
  );
  console.log(`\nwritten: ${path.relative(process.cwd(), out)}`);
} finally {
  killAllChildren();
  await removeBase();
  detach();
}
