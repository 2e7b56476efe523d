/**
 * Measure 1: implicit `chat.send` against a gateway in its own process (started through the CLI),
 * from this process as the client. Ack latency paced and in a burst, and send → final (echo).
 */
import { mkdir, rm } from "node:fs/promises";
import * as path from "node:path";
import { chatSend, connectClient } from "./lib/client.ts";
import type { SectionContext } from "./lib/context.ts";
import { startGatewayChild } from "./lib/gateway-child.ts";
import { burstSends, pacedSends } from "./lib/load.ts";
import { statRow, valueRow } from "./lib/report.ts";
import { envInt, sleep, stats } from "./lib/stats.ts";
import { ephemeralFloor } from "./modes.ts";

export const LATENCY_ENV = {
  BENCH_WARMUP: "implicit sessions sent before measuring (default 50)",
  BENCH_PACED: "paced sends, one at a time with a 2 ms gap (default 300)",
  BENCH_BURST: "sends written back to back in the burst (default 200)",
};

/** One raw-fs floor session (modes.ts's ephemeralFloor) in `root`, timed, in ms. */
async function timedFloor(root: string): Promise<number> {
  const t0 = performance.now();
  await ephemeralFloor(root);
  return performance.now() - t0;
}

/** The raw-fs floor of `count` implicit sessions at once, as the gateway got the burst: wall time, ms. */
async function floorAtOnce(root: string, count: number): Promise<number> {
  const t0 = performance.now();
  await Promise.all(Array.from({ length: count }, () => ephemeralFloor(root)));
  return performance.now() - t0;
}

/** The gateway store's commit count, as `health` reports it. */
async function storeCommits(client: Awaited<ReturnType<typeof connectClient>>): Promise<number> {
  const health = await client.request("health", {});
  const commits = (health.payload as { store?: { commits?: unknown } } | undefined)?.store?.commits;
  if (typeof commits !== "number") throw new Error(`health reports no store.commits: ${JSON.stringify(health.payload)}`);
  return commits;
}

export async function latencySection(ctx: SectionContext): Promise<void> {
  const warmup = envInt("BENCH_WARMUP", 50);
  const paced = envInt("BENCH_PACED", 300);
  const burst = envInt("BENCH_BURST", 200);
  const gateway = await startGatewayChild({ dir: ctx.dir, implicit: "ephemeral", idleTtlMs: 0 });
  try {
    const client = await connectClient(gateway.url, gateway.token);
    try {
      // Warm-up: JIT on both sides, SQLite page cache, the first directories in the root.
      for (let i = 0; i < warmup; i++) {
        const sent = await chatSend(client, { sessionKey: `warm-${i}`, message: "hello", idempotencyKey: `warm-${i}` });
        if (sent.ack.ok) await sent.end;
      }
      // The raw-fs floor (what the gateway does per implicit session, done raw in this process) is
      // measured one for one between the paced sends, so both see the same state of the disk.
      const floorRoot = path.join(ctx.dir, "raw-floor");
      await mkdir(floorRoot, { mode: 0o700 });
      const floorPaced: number[] = [];
      const commitsBefore = await storeCommits(client);
      const { ack: pacedAck, final: sendToFinal, refused: pacedRefused } = await pacedSends(client, {
        count: paced,
        prefix: "paced",
        between: async () => void floorPaced.push(await timedFloor(floorRoot)),
      });
      const commitsPerSession = ((await storeCommits(client)) - commitsBefore) / Math.max(1, paced - pacedRefused);
      await sleep(100);
      const { ack: burstAck, final: burstFinal, refused: burstRefused } = await burstSends(client, { count: burst, prefix: "burst" });
      const refused = pacedRefused + burstRefused;
      const floor = { paced: floorPaced, burstMs: await floorAtOnce(floorRoot, burst) };
      await rm(floorRoot, { recursive: true, force: true });
      ctx.rows.push(
        statRow("ack.paced", "chat.send ack, paced", stats(pacedAck), "ms", {
          target: { on: "p99", max: 5, text: "p99 ≤ 5 ms" },
          upstream: "10.2 / 26.5 / 36.7 ms",
        }),
        statRow("ack.burst", `chat.send ack, ${burst}-send burst`, stats(burstAck), "ms", {
          // Issue 14's (it was ≤ 50 ms before).
          target: { on: "p99", max: 10, text: "p99 ≤ 10 ms" },
          upstream: "p99 ~910 ms",
        }),
        statRow("final.paced", "send → final (echo), paced", stats(sendToFinal), "ms", {
          target: { on: "p50", max: 5, text: "p50 ≤ 5 ms" },
          upstream: "p50 184, p99 349 ms",
        }),
        statRow("final.burst", `send → final, ${burst}-send burst`, stats(burstFinal), "ms"),
        statRow("floor.paced", "  raw-fs floor per implicit session, paced", stats(floor.paced), "ms", { note: "mkdtemp + marker + bootstrap files + rm -r, in the bench process, one after each paced send" }),
        valueRow("final.paced-vs-floor", "  send → final p50 ÷ raw-fs floor p50", stats(sendToFinal).p50 / stats(floor.paced).p50, "x", {
          target: { on: "value", max: 2, text: "≤ 2×" },
        }),
        valueRow("floor.burst", `  raw-fs floor, ${burst} sessions at once`, floor.burstMs, "ms"),
        valueRow("final.burst-vs-floor", `  ${burst}-send burst all ended ÷ raw-fs floor for ${burst} at once`, stats(burstFinal).max / floor.burstMs, "x", {
          target: { on: "value", max: 2, text: "≤ 2×" },
        }),
        valueRow("commits.session", "SQLite commits per one-shot implicit session (paced)", commitsPerSession, "count", {
          target: { on: "value", max: 3, text: "≤ 3" },
          note: "health's store.commits over the paced sends, divided by them (health's own reads commit nothing)",
        }),
      );
      Object.assign(ctx.details, { warmup, paced, burst, refused, commitsPerSession, floor: { paced: stats(floor.paced), burstMs: floor.burstMs }, pacedAck: stats(pacedAck), sendToFinal: stats(sendToFinal), burstAck: stats(burstAck), burstFinal: stats(burstFinal) });
    } finally {
      await client.close();
    }
  } finally {
    await gateway.stop();
  }
}
