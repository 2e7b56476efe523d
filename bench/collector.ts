/**
 * Measure 5: the collector. Three identical trees of BENCH_ORPHANS orphaned leases are made by
 * children (bench/orphan-maker.ts) that acquire through createEphemeralProvider and are then
 * SIGKILLed. Tree A is reclaimed by `sweep`, tree B by `rm -rf` (same run, one after the other),
 * and tree C is the root of a gateway child with gc.onStartup, whose `chat.send` acks are timed
 * from this process while its start-up sweep reclaims the orphans.
 */
import { execFile } from "node:child_process";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";
import { sweep } from "../packages/workspace/src/index.ts";
import { chatSend, connectClient } from "./lib/client.ts";
import type { SectionContext } from "./lib/context.ts";
import { rootEntries } from "./lib/fs-usage.ts";
import { childEnv, startGatewayChild } from "./lib/gateway-child.ts";
import { signalChild, spawnNode } from "./lib/processes.ts";
import { statRow, valueRow } from "./lib/report.ts";
import { envInt, sleep, stats, withTimeout } from "./lib/stats.ts";

export const COLLECTOR_ENV = { BENCH_ORPHANS: "orphaned leases per tree (default 10000; three trees are made)" };

const ORPHAN_MAKER = fileURLToPath(new URL("./orphan-maker.ts", import.meta.url));
const run = promisify(execFile);

/** Makes `count` orphans in each root, with one child per root (concurrently), then SIGKILLs them. */
async function makeOrphans(ctx: SectionContext, roots: readonly string[], count: number): Promise<number> {
  const t0 = performance.now();
  const env = await childEnv(ctx.dir);
  const makers = roots.map((root) => {
    let onReady!: () => void;
    const ready = new Promise<void>((resolve) => (onReady = resolve));
    const child = spawnNode([ORPHAN_MAKER, root, String(count), "8"], {
      env,
      onStdoutLine: (line) => {
        if (line.startsWith("ready ")) onReady();
      },
    });
    return { child, ready };
  });
  try {
    await withTimeout(
      Promise.all(
        makers.map(({ child, ready }) =>
          Promise.race([
            ready,
            child.exited.then(({ code }) => {
              throw new Error(`orphan-maker exited (${code}) before ready:\n${child.stderrTail().join("\n")}`);
            }),
          ]),
        ),
      ),
      10 * 60_000,
      "orphan makers",
    );
  } finally {
    for (const { child } of makers) signalChild(child.child, "SIGKILL");
    await Promise.all(makers.map(({ child }) => child.exited));
  }
  return performance.now() - t0;
}

export async function collectorSection(ctx: SectionContext): Promise<void> {
  const orphans = Math.max(1, envInt("BENCH_ORPHANS", 10_000));
  const treeSweep = path.join(ctx.dir, "tree-sweep");
  const treeRm = path.join(ctx.dir, "tree-rm");
  const gatewayDir = path.join(ctx.dir, "gateway");
  const treeGateway = path.join(gatewayDir, "root");
  ctx.log(`  making 3 × ${orphans} orphaned leases (children SIGKILLed after acquiring)`);
  const makeMs = await makeOrphans(ctx, [treeSweep, treeRm, treeGateway], orphans);
  const counts = await Promise.all([treeSweep, treeRm, treeGateway].map((root) => rootEntries(root)));
  ctx.log(`  made in ${(makeMs / 1000).toFixed(1)} s: ${counts.map((c) => c.leases).join(" / ")} lease dirs`);
  for (const c of counts) if (c.leases !== orphans) throw new Error(`expected ${orphans} orphans, found ${c.leases}`);

  // Orphans left by a crash were written back long ago. Freshly written files are not (ext4's
  // delayed allocation makes deleting them artificially cheap for whichever removal runs first),
  // so the file system is flushed before each timed removal.
  const flush = async (): Promise<void> => void (await run("sync", ["-f", ctx.dir], { timeout: 120_000 }));
  // A: the collector (offline, as `ocgw workspaces gc` runs it; default concurrency 8).
  await flush();
  const sweepT0 = performance.now();
  const result = await sweep({ root: treeSweep });
  const sweepMs = performance.now() - sweepT0;
  const afterSweep = await rootEntries(treeSweep);
  // B: rm -rf of an identical tree.
  await flush();
  const rmT0 = performance.now();
  await run("rm", ["-rf", treeRm], { timeout: 10 * 60_000 });
  const rmMs = performance.now() - rmT0;
  ctx.log(`  sweep ${(sweepMs / 1000).toFixed(2)} s (reclaimed ${result.reclaimed}, failed ${result.failed}) vs rm -rf ${(rmMs / 1000).toFixed(2)} s`);

  // C: a gateway whose start-up sweep reclaims the same number of orphans while we send.
  await flush();
  let sweepDoneAt: number | undefined;
  let sweepLine = "";
  const gateway = await startGatewayChild({
    dir: gatewayDir,
    root: treeGateway,
    implicit: "ephemeral",
    idleTtlMs: 0,
    gcOnStartup: true,
    onStderrLine: (line, at) => {
      if (sweepDoneAt === undefined && (line.includes("collector: reclaimed") || line.includes("start-up collection failed"))) {
        sweepDoneAt = at;
        sweepLine = line;
      }
    },
  });
  const acks: number[] = [];
  const finals: number[] = [];
  let sentDuringSweep = 0;
  let gatewayLeft: Awaited<ReturnType<typeof rootEntries>>;
  try {
    const client = await connectClient(gateway.url, gateway.token);
    try {
      const deadline = performance.now() + 5 * 60_000;
      for (let i = 0; i < 100_000 && sweepDoneAt === undefined && performance.now() < deadline; i++) {
        const sent = await chatSend(client, { sessionKey: `during-gc-${i}`, message: "hello there", idempotencyKey: `during-gc-${i}` });
        if (!sent.ack.ok) continue;
        if (sweepDoneAt === undefined || sent.t0 < sweepDoneAt) {
          acks.push(sent.ack.at - sent.t0);
          sentDuringSweep += 1;
        }
        const end = await sent.end;
        if (end.state === "final" && (sweepDoneAt === undefined || sent.t0 < sweepDoneAt)) finals.push(end.at - sent.t0);
        await sleep(2);
      }
      if (sweepDoneAt === undefined) ctx.log("  the start-up sweep did not report within 5 minutes");
    } finally {
      await client.close();
    }
    gatewayLeft = await rootEntries(treeGateway);
  } finally {
    await gateway.stop();
  }
  const gatewaySweepMs = sweepDoneAt === undefined ? Number.NaN : sweepDoneAt - gateway.readyAt;
  ctx.log(`  gateway start-up sweep ${(gatewaySweepMs / 1000).toFixed(2)} s (${sweepLine.replace("[ocgw] ", "")}); ${sentDuringSweep} sends during it`);

  const ackStats = stats(acks);
  ctx.rows.push(
    valueRow("gc.sweep", `sweep of ${orphans.toLocaleString("en-US")} orphans (offline)`, sweepMs / 1000, "s", { note: `reclaimed ${result.reclaimed}, failed ${result.failed}` }),
    valueRow("gc.rm", `rm -rf of an identical tree`, rmMs / 1000, "s"),
    valueRow("gc.ratio", "sweep / rm -rf", sweepMs / rmMs, "x", { target: { on: "value", max: 2, text: "≤ 2× rm -rf" } }),
    valueRow("gc.left", "lease dirs + trash left after the sweep", afterSweep.leases + afterSweep.trash, "count", { target: { on: "value", max: 0, text: "0" } }),
    statRow("gc.ack", `chat.send ack during a start-up sweep of ${orphans.toLocaleString("en-US")}`, ackStats, "ms", {
      target: { on: "p99", max: 20, text: "p99 ≤ 20 ms" },
      note: `${acks.length} paced sends while the sweep ran`,
    }),
    statRow("gc.final", "send → final during that sweep", stats(finals), "ms"),
    valueRow("gc.gateway-sweep", "gateway start-up sweep, ready → done", gatewaySweepMs / 1000, "s", {
      note: `left in its root: ${gatewayLeft.leases} lease dirs, ${gatewayLeft.trash} trash`,
    }),
  );
  Object.assign(ctx.details, {
    orphans,
    makeMs,
    sweepMs,
    rmMs,
    ratio: sweepMs / rmMs,
    sweepResult: { reclaimed: result.reclaimed, kept: result.kept, reported: result.reported, failed: result.failed, forgottenInstances: result.forgottenInstances },
    afterSweep,
    gatewaySweepMs,
    gatewaySweepLine: sweepLine,
    ackDuringSweep: ackStats,
    finalDuringSweep: stats(finals),
    gatewayLeft,
  });
}
