/**
 * Measure 4: RSS of the gateway process (VmRSS from /proc/<pid>/status), idle after ready and
 * with BENCH_SESSIONS live implicit sessions (idleTtlMs 1 h, so every workspace stays), then a
 * graceful SIGINT that must release them all and leave the root without a lease or trash entry.
 */
import * as path from "node:path";
import { connectClient } from "./lib/client.ts";
import type { SectionContext } from "./lib/context.ts";
import { fillLiveSessions } from "./lib/load.ts";
import { rootEntries } from "./lib/fs-usage.ts";
import { startGatewayChild } from "./lib/gateway-child.ts";
import { sampleRss } from "./lib/processes.ts";
import { valueRow } from "./lib/report.ts";
import { envInt, sleep } from "./lib/stats.ts";

export const MEMORY_ENV = {
  BENCH_SESSIONS: "live implicit sessions for the RSS measure (default 10000)",
  BENCH_BATCH: "chat.send in flight per batch while filling (default 250)",
};

const MB = 1024;

/**
 * The idle RSS of the same gateway with Node's compile cache disabled, as on a first start: Node
 * then compiles every module of the built output itself. The CLI enables the cache, so later
 * starts skip that.
 */
async function idleWithoutCompileCache(ctx: SectionContext): Promise<number> {
  const gateway = await startGatewayChild({ dir: path.join(ctx.dir, "gateway-no-cache"), implicit: "ephemeral", compileCache: "off" });
  try {
    await sleep(500);
    return await sampleRss(gateway.pid);
  } finally {
    await gateway.stop();
  }
}

export async function memorySection(ctx: SectionContext): Promise<void> {
  const sessions = envInt("BENCH_SESSIONS", 10_000);
  const batch = Math.max(1, envInt("BENCH_BATCH", 250));
  const deadline = performance.now() + 10 * 60_000;
  // Make sure the shared compile cache is warm, as it is for every start after the first.
  await (await startGatewayChild({ dir: path.join(ctx.dir, "gateway-prime"), implicit: "ephemeral" })).stop();
  const gateway = await startGatewayChild({
    dir: path.join(ctx.dir, "gateway"),
    implicit: "ephemeral",
    idleTtlMs: 3_600_000,
    maxLeases: Math.max(10_000, sessions),
  });
  let stopped = false;
  try {
    await sleep(500);
    const idleKb = await sampleRss(gateway.pid);
    ctx.log(`  idle RSS ${(idleKb / MB).toFixed(1)} MB; filling ${sessions} live sessions`);
    const client = await connectClient(gateway.url, gateway.token);
    try {
      const { finals, failed, ms: fillMs } = await fillLiveSessions(client, { count: sessions, batch, deadline, prefix: "live" });
      const health = await client.request("health", {});
      const live = (health.payload as { workspaces?: { live?: number } } | undefined)?.workspaces?.live;
      await sleep(1000);
      const loadedKb = await sampleRss(gateway.pid);
      const peakKb = (await gateway.rss()).peakKb;
      const inRoot = await rootEntries(gateway.root);
      ctx.log(`  ${finals} finals (${failed} failed) in ${(fillMs / 1000).toFixed(1)} s; gateway reports ${live} live; ${inRoot.leases} lease dirs; RSS ${(loadedKb / MB).toFixed(1)} MB`);
      await client.close();

      const stop = await gateway.stop(120_000);
      stopped = true;
      const after = await rootEntries(gateway.root);
      const uncachedIdleKb = await idleWithoutCompileCache(ctx);
      ctx.rows.push(
        valueRow("rss.idle", "gateway RSS, idle after ready", idleKb / MB, "MB", {
          // Issue 11's target for the built output.
          target: { on: "value", max: 60, text: "≤ 60 MB" },
          upstream: "~880 MB",
          note: "compile cache warm (every start after the first)",
        }),
        valueRow("rss.idle-first", "  … first start, no compile cache", uncachedIdleKb / MB, "MB", {
          note: "the built JavaScript, compile cache disabled",
        }),
        valueRow("rss.live", `gateway RSS, ${finals.toLocaleString("en-US")} live sessions`, loadedKb / MB, "MB", {
          target: { on: "value", max: 250, text: "≤ 250 MB" },
          upstream: "peak ~1.26 GB (200 sends)",
          note: `peak (VmHWM) ${(peakKb / MB).toFixed(1)} MB; ${live} live workspaces reported by health`,
        }),
        valueRow("rss.per-session", "  RSS growth per live session", ((loadedKb - idleKb) * 1024) / Math.max(1, finals), "B"),
        valueRow("live.fill", `  time to fill them (${batch} in flight)`, fillMs / 1000, "s"),
        valueRow("live.shutdown", `SIGINT → exit, releasing ${inRoot.leases.toLocaleString("en-US")} workspaces`, stop.ms / 1000, "s", {
          note: `exit code ${stop.code}${stop.forced ? ", had to be SIGKILLed" : ""}`,
        }),
        valueRow("live.shutdown-peak", "  peak RSS (VmHWM) while releasing them", stop.peakKb / MB, "MB", { note: "sampled every 50 ms until exit" }),
        valueRow("live.left", "lease dirs + trash left in the root after SIGINT", after.leases + after.trash, "count", {
          target: { on: "value", max: 0, text: "0" },
          note: `bookkeeping left: ${after.bookkeeping.join(", ") || "none"}; other: ${after.other.length}`,
        }),
      );
      Object.assign(ctx.details, { sessions, batch, idleKb, uncachedIdleKb, loadedKb, peakKb, finals, failed, healthLive: live, fillMs, leaseDirsBeforeStop: inRoot.leases, stop, rootAfterStop: after });
    } finally {
      await client.close();
    }
  } finally {
    if (!stopped) await gateway.stop(120_000);
  }
}
