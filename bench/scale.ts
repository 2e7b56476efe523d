/**
 * Measure 9: one gateway with BENCH_LIVE live implicit sessions (default 100,000; idleTtlMs 1 h,
 * so every ephemeral workspace stays on disk): its RSS and the growth per live session, paced
 * `chat.send` acks while they are all live, and a graceful SIGINT (bounded to 10 s): what it leaves
 * is reclaimed by the next start's collector, measured too.
 */
import * as path from "node:path";
import { connectClient } from "./lib/client.ts";
import type { SectionContext } from "./lib/context.ts";
import { rootEntries } from "./lib/fs-usage.ts";
import { startGatewayChild } from "./lib/gateway-child.ts";
import { fillLiveSessions, pacedSends } from "./lib/load.ts";
import { sampleRss } from "./lib/processes.ts";
import { statRow, valueRow } from "./lib/report.ts";
import { envInt, sleep, stats } from "./lib/stats.ts";

export const SCALE_ENV = {
  BENCH_LIVE: "live implicit sessions in one gateway for section 7 (default 100000)",
  BENCH_LIVE_PACED: "paced sends measured while they are live (default 300)",
};

const MB = 1024;

/**
 * A gateway started again on the same state dir and root, as after a restart: its start-up
 * collection reclaims what the last one's shutdown bound left. Time from ready to its log line.
 */
async function nextStartReclaims(ctx: SectionContext, dir: string): Promise<{ sweepMs: number; line: string; left: number }> {
  let done: { at: number; line: string } | undefined;
  const gateway = await startGatewayChild({
    dir,
    implicit: "ephemeral",
    gcOnStartup: true,
    onStderrLine: (line, at) => {
      if (done === undefined && (line.includes("collector: reclaimed") || line.includes("start-up collection failed"))) done = { at, line: line.replace("[ocgw] ", "") };
    },
  });
  try {
    const deadline = performance.now() + 10 * 60_000;
    while (done === undefined && performance.now() < deadline) await sleep(50);
  } finally {
    await gateway.stop(600_000);
  }
  const after = await rootEntries(gateway.root);
  ctx.log(`  next start: ${done?.line ?? "no collector line within 10 minutes"}; ${after.leases + after.trash} left`);
  return { sweepMs: done === undefined ? Number.NaN : done.at - gateway.readyAt, line: done?.line ?? "no collector line within 10 minutes", left: after.leases + after.trash };
}

export async function scaleSection(ctx: SectionContext): Promise<void> {
  const count = envInt("BENCH_LIVE", 100_000);
  const paced = envInt("BENCH_LIVE_PACED", 300);
  const batch = Math.max(1, envInt("BENCH_BATCH", 250));
  const gatewayDir = path.join(ctx.dir, "gateway");
  const gateway = await startGatewayChild({ dir: gatewayDir, implicit: "ephemeral", idleTtlMs: 3_600_000, maxLeases: count + paced + 1000 });
  let stopped = false;
  try {
    await sleep(500);
    const idleKb = await sampleRss(gateway.pid);
    const client = await connectClient(gateway.url, gateway.token);
    try {
      ctx.log(`  idle RSS ${(idleKb / MB).toFixed(1)} MB; filling ${count} live sessions`);
      const filled = await fillLiveSessions(client, { count, batch, deadline: performance.now() + 20 * 60_000, prefix: "scale" });
      await sleep(1000);
      const loadedKb = await sampleRss(gateway.pid);
      ctx.log(`  ${filled.finals} finals (${filled.failed} failed) in ${(filled.ms / 1000).toFixed(1)} s; RSS ${(loadedKb / MB).toFixed(1)} MB; ${paced} paced sends`);
      const during = await pacedSends(client, { count: paced, prefix: "scale-paced" });
      const inRoot = await rootEntries(gateway.root);
      await client.close();
      const stop = await gateway.stop(600_000);
      stopped = true;
      const after = await rootEntries(gateway.root);
      const next = after.leases + after.trash > 0 ? await nextStartReclaims(ctx, gatewayDir) : undefined;
      const label = filled.finals.toLocaleString("en-US");
      ctx.rows.push(
        valueRow("scale.rss", `gateway RSS, ${label} live sessions`, loadedKb / MB, "MB", {
          target: { on: "value", max: 600, text: "≤ 600 MB" },
          note: `idle ${(idleKb / MB).toFixed(1)} MB; filled in ${(filled.ms / 1000).toFixed(1)} s, ${batch} in flight, ${filled.failed} failed`,
        }),
        valueRow("scale.per-session", "  RSS growth per live session", ((loadedKb - idleKb) * 1024) / Math.max(1, filled.finals), "B", {
          target: { on: "value", max: 4096, text: "≤ 4 KB" },
        }),
        statRow("scale.ack", `  chat.send ack, paced, while ${label} are live`, stats(during.ack), "ms", { target: { on: "p99", max: 5, text: "p99 ≤ 5 ms" } }),
        statRow("scale.final", "  send → final (echo), paced, while they are live", stats(during.final), "ms"),
        valueRow("scale.shutdown", `  SIGINT → exit, releasing ${inRoot.leases.toLocaleString("en-US")} workspaces`, stop.ms / 1000, "s", {
          note: `exit code ${stop.code}${stop.forced ? ", had to be SIGKILLed" : ""}; peak RSS ${(stop.peakKb / MB).toFixed(1)} MB`,
        }),
        valueRow("scale.left", "  lease dirs + trash left in the root after SIGINT", after.leases + after.trash, "count", {
          note: "the shutdown bound (10 s) leaves the rest, marked and in the ledger, to the next start's collector",
        }),
      );
      if (next !== undefined) {
        ctx.rows.push(
          valueRow("scale.next-sweep", "  next start's sweep of them, ready → done", next.sweepMs / 1000, "s", { note: next.line }),
          valueRow("scale.next-left", "  lease dirs + trash left after it", next.left, "count", { target: { on: "value", max: 0, text: "0" } }),
        );
      }
      Object.assign(ctx.details, { count, paced, batch, idleKb, loadedKb, filled, during: { ack: stats(during.ack), final: stats(during.final), refused: during.refused }, leaseDirs: inRoot.leases, stop, after, next });
    } finally {
      await client.close();
    }
  } finally {
    if (!stopped) await gateway.stop(600_000);
  }
}
