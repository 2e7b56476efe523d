/**
 * Measure 10 (BENCH_UPSTREAM=1): the same latency measures against ocgw and the real OpenClaw
 * 2026.9.6, side by side in one run. Both gateways run as children at the same time, both answer
 * from the same loopback mock model (ocgw through its openai runner, `idleTtlMs` 0, ephemeral
 * workspaces; OpenClaw through its `openai-completions` provider), and the rounds alternate
 * (ocgw, OpenClaw, ocgw, …), so both see the same machine. Rows: each side's numbers and
 * OpenClaw ÷ ocgw. Without BENCH_UPSTREAM=1 it prints one row saying it was skipped.
 */
import * as path from "node:path";
import { mkdir } from "node:fs/promises";
import { type BenchClient, connectClient } from "./lib/client.ts";
import type { SectionContext } from "./lib/context.ts";
import { startGatewayChild } from "./lib/gateway-child.ts";
import { type Burst, type Paced, burstSends, pacedSends, warmUp } from "./lib/load.ts";
import { type MockModel, openaiRunner, startMockModel } from "./lib/model.ts";
import { OPENCLAW_VERSION, ensureOpenClaw, startOpenClawChild, treeCommands } from "./lib/openclaw-child.ts";
import { type Row, statRow, valueRow } from "./lib/report.ts";
import { type Stats, envInt, median, sleep, stats } from "./lib/stats.ts";

export const UPSTREAM_ENV = {
  BENCH_UPSTREAM: `1 = section 10 runs ocgw and the real openclaw@${OPENCLAW_VERSION} side by side (installed into node_modules/.cache/ocgw-openclaw on first use, as npm run test:openclaw does); otherwise one row says it was skipped`,
  BENCH_UPSTREAM_ROUNDS: "section 10: rounds per gateway, alternating (default 3)",
  BENCH_UPSTREAM_PACED: "section 10: paced sends per gateway per round (default 20)",
  BENCH_UPSTREAM_BURST: "section 10: sends written at once per gateway per round (default 50)",
  BENCH_UPSTREAM_WARMUP: "section 10: sends per gateway before the rounds (default 5)",
};

interface Side {
  readonly name: "ocgw" | "OpenClaw";
  readonly client: BenchClient;
  /** VmRSS (KiB) of the gateway process and of its process tree. */
  rss(): Promise<{ rssKb: number; treeKb: number }>;
  stop(): Promise<void>;
  /** How long one run may take to end in a burst of `burst`. */
  endTimeoutMs(burst: number): number;
}

interface Samples {
  readonly pacedAck: number[];
  readonly pacedFinal: number[];
  readonly burstAck: number[];
  /** One per round: the burst's first write → its last end. */
  readonly allEnded: number[];
  /** Accepted runs that ended other than `final` (error, aborted). */
  notFinal: number;
  refused: number;
  readonly rssMb: { afterStart: number; treeAfterStart: number; afterRounds: number; treeAfterRounds: number };
}

const newSamples = (): Samples => ({ pacedAck: [], pacedFinal: [], burstAck: [], allEnded: [], notFinal: 0, refused: 0, rssMb: { afterStart: NaN, treeAfterStart: NaN, afterRounds: NaN, treeAfterRounds: NaN } });

async function startOcgw(dir: string, model: MockModel): Promise<Side> {
  await mkdir(dir);
  const gateway = await startGatewayChild({ dir, implicit: "ephemeral", idleTtlMs: 0, runner: openaiRunner(model) });
  const client = await connectClient(gateway.url, gateway.token).catch(async (error: unknown) => {
    await gateway.stop();
    throw error;
  });
  return {
    name: "ocgw",
    client,
    rss: async () => {
      const { rssKb } = await gateway.rss();
      return { rssKb, treeKb: rssKb };
    },
    stop: async () => {
      await client.close();
      await gateway.stop();
    },
    endTimeoutMs: (burst) => 60_000 + burst * 100,
  };
}

async function startOpenClaw(dir: string, model: MockModel, log: (line: string) => void): Promise<Side> {
  await mkdir(dir);
  const { gateway, client } = await startOpenClawChild({ dir, modelBaseUrl: model.baseUrl });
  const tree = await treeCommands(gateway.pid);
  log(`  openclaw: ready line ${((gateway.readyAt - gateway.spawnedAt) / 1000).toFixed(1)} s, hello-ok ${((gateway.connectedAt - gateway.spawnedAt) / 1000).toFixed(1)} s after spawn; ${tree.length} processes under it${tree.map((line) => `\n    ${line}`).join("")}`);
  return {
    name: "OpenClaw",
    client,
    rss: () => gateway.rss(),
    stop: async () => {
      await client.close();
      await gateway.stop();
    },
    // ~0.5 s per run here, and a burst's runs end one after another.
    endTimeoutMs: (burst) => 120_000 + burst * 3_000,
  };
}

/** Median of 5 readings 200 ms apart, in MB: the gateway process and its tree. */
async function rssMb(side: Side): Promise<{ own: number; tree: number }> {
  const readings: { rssKb: number; treeKb: number }[] = [];
  for (let i = 0; i < 5; i++) {
    readings.push(await side.rss());
    if (i < 4) await sleep(200);
  }
  return { own: median(readings.map((r) => r.rssKb)) / 1024, tree: median(readings.map((r) => r.treeKb)) / 1024 };
}

function record(samples: Samples, paced: Paced, burst: Burst): void {
  samples.pacedAck.push(...paced.ack);
  samples.pacedFinal.push(...paced.final);
  samples.burstAck.push(...burst.ack);
  samples.allEnded.push(burst.allEndedMs);
  samples.refused += paced.refused + burst.refused;
  samples.notFinal += paced.ack.length - paced.final.length + burst.ack.length - burst.final.length;
}

/** One round on one side: `paced` sends one at a time, 1 s of rest, then `burst` written at once. */
async function round(side: Side, samples: Samples, prefix: string, paced: number, burst: number): Promise<void> {
  const endTimeoutMs = side.endTimeoutMs(burst);
  const pacedResult = await pacedSends(side.client, { count: paced, prefix: `${prefix}-p`, endTimeoutMs });
  await sleep(1_000);
  const burstResult = await burstSends(side.client, { count: burst, prefix: `${prefix}-b`, endTimeoutMs });
  record(samples, pacedResult, burstResult);
}

const ratio = (a: Stats, b: Stats): Stats => ({ p50: a.p50 / b.p50, p95: a.p95 / b.p95, p99: a.p99 / b.p99, min: NaN, max: NaN, n: Math.min(a.n, b.n) });

/** Three rows per distribution: ocgw, OpenClaw, OpenClaw ÷ ocgw (each quantile over the same quantile). */
function distributionRows(id: string, measure: string, ocgw: number[], openclaw: number[]): Row[] {
  const [a, b] = [stats(ocgw), stats(openclaw)];
  return [
    statRow(`upstream.${id}.ocgw`, `[ocgw] ${measure}`, a, "ms"),
    statRow(`upstream.${id}.openclaw`, `[OpenClaw] ${measure}`, b, "ms"),
    statRow(`upstream.${id}.ratio`, "  OpenClaw ÷ ocgw", ratio(b, a), "x"),
  ];
}

function valueRows(id: string, measure: string, unit: "ms" | "MB", ocgw: number, openclaw: number, notes: { ocgw?: string; openclaw?: string } = {}): Row[] {
  return [
    valueRow(`upstream.${id}.ocgw`, `[ocgw] ${measure}`, ocgw, unit, notes.ocgw === undefined ? {} : { note: notes.ocgw }),
    valueRow(`upstream.${id}.openclaw`, `[OpenClaw] ${measure}`, openclaw, unit, notes.openclaw === undefined ? {} : { note: notes.openclaw }),
    valueRow(`upstream.${id}.ratio`, "  OpenClaw ÷ ocgw", openclaw / ocgw, "x"),
  ];
}

const roundsNote = (samples: Samples): string => `rounds: ${samples.allEnded.map((ms) => (ms >= 1000 ? `${(ms / 1000).toFixed(1)} s` : `${ms.toFixed(0)} ms`)).join(", ")}`;

function rows(ocgw: Samples, openclaw: Samples, burst: number, rounds: number): Row[] {
  return [
    ...distributionRows("ack.paced", "chat.send ack, paced", ocgw.pacedAck, openclaw.pacedAck),
    ...distributionRows("final.paced", "send → final (mock model), paced", ocgw.pacedFinal, openclaw.pacedFinal),
    ...distributionRows("ack.burst", `chat.send ack, ${burst}-send burst`, ocgw.burstAck, openclaw.burstAck),
    ...valueRows("burst.all-ended", `${burst}-send burst, all ended (median of ${rounds} rounds)`, "ms", median(ocgw.allEnded), median(openclaw.allEnded), { ocgw: roundsNote(ocgw), openclaw: roundsNote(openclaw) }),
    ...valueRows("rss.start", "gateway RSS after start", "MB", ocgw.rssMb.afterStart, openclaw.rssMb.treeAfterStart, { openclaw: `process tree; the gateway process alone ${openclaw.rssMb.afterStart.toFixed(1)} MB` }),
    ...valueRows("rss.rounds", "gateway RSS after the rounds", "MB", ocgw.rssMb.afterRounds, openclaw.rssMb.treeAfterRounds, { openclaw: `process tree; the gateway process alone ${openclaw.rssMb.afterRounds.toFixed(1)} MB` }),
  ];
}

function skippedRow(): Row {
  return valueRow("upstream.skipped", `side by side with OpenClaw ${OPENCLAW_VERSION}`, NaN, "count", {
    display: "skipped",
    note: "skipped because BENCH_UPSTREAM is not 1: the section starts the real OpenClaw (installed into node_modules/.cache/ocgw-openclaw on first use) and takes ~3 min; see docs/benchmarks.md",
  });
}

interface Counts {
  readonly rounds: number;
  readonly paced: number;
  readonly burst: number;
  readonly warmup: number;
}

/** RSS after start and a warm-up on each side, the alternating rounds, RSS after them. */
async function compare(sides: readonly Side[], counts: Counts, log: (line: string) => void): Promise<Samples[]> {
  const samples = sides.map(() => newSamples());
  for (const [i, side] of sides.entries()) await measureStart(side, samples[i] as Samples, counts.warmup);
  for (let r = 1; r <= counts.rounds; r++) {
    for (const [i, side] of sides.entries()) {
      const t0 = performance.now();
      await round(side, samples[i] as Samples, `r${r}`, counts.paced, counts.burst);
      log(`  round ${r}, ${side.name}: ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      await sleep(1_000);
    }
  }
  for (const [i, side] of sides.entries()) {
    const { notFinal, refused } = await measureEnd(side, samples[i] as Samples);
    log(`  ${side.name}: ${notFinal} runs ended other than final, ${refused} sends refused at the ack`);
  }
  return samples;
}

export async function upstreamSection(ctx: SectionContext): Promise<void> {
  if (process.env.BENCH_UPSTREAM !== "1") {
    ctx.rows.push(skippedRow());
    ctx.log("  skipped: set BENCH_UPSTREAM=1 to run it");
    return;
  }
  const counts: Counts = {
    rounds: envInt("BENCH_UPSTREAM_ROUNDS", 3),
    paced: envInt("BENCH_UPSTREAM_PACED", 20),
    burst: envInt("BENCH_UPSTREAM_BURST", 50),
    warmup: envInt("BENCH_UPSTREAM_WARMUP", 5),
  };
  await ensureOpenClaw();
  const model = await startMockModel();
  const sides: Side[] = [];
  try {
    sides.push(await startOcgw(path.join(ctx.dir, "ocgw"), model));
    sides.push(await startOpenClaw(path.join(ctx.dir, "openclaw"), model, ctx.log));
    const [ocgw, openclaw] = (await compare(sides, counts, ctx.log)) as [Samples, Samples];
    ctx.rows.push(...rows(ocgw, openclaw, counts.burst, counts.rounds));
    Object.assign(ctx.details, { version: OPENCLAW_VERSION, ...counts, completions: model.completions(), ocgw, openclaw });
  } finally {
    for (const side of sides) await side.stop().catch((error: unknown) => ctx.log(`  stopping ${side.name}: ${String(error)}`));
    await model.close();
  }
}

async function measureStart(side: Side, samples: Samples, warmup: number): Promise<void> {
  await sleep(1_000);
  const rss = await rssMb(side);
  Object.assign(samples.rssMb, { afterStart: rss.own, treeAfterStart: rss.tree });
  await warmUp(side.client, { count: warmup, prefix: "warm", endTimeoutMs: side.endTimeoutMs(1) });
}

async function measureEnd(side: Side, samples: Samples): Promise<Samples> {
  await sleep(1_000);
  const rss = await rssMb(side);
  Object.assign(samples.rssMb, { afterRounds: rss.own, treeAfterRounds: rss.tree });
  return samples;
}
