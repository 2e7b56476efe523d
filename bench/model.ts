/**
 * Measure 8: the openai runner against a loopback mock model. Three things interleaved one for one,
 * so all three see the same machine state: the model round-trip floor (the runner's own request
 * from this process, no gateway), the raw-fs floor of an implicit session (section 1's), and a
 * paced send → final through a gateway child with that runner. The target compares them:
 * send → final p50 ≤ 2 × (raw-fs floor p50 + model round trip p50).
 */
import { mkdir } from "node:fs/promises";
import * as path from "node:path";
import { type BenchClient, chatSend, connectClient } from "./lib/client.ts";
import type { SectionContext } from "./lib/context.ts";
import { startGatewayChild } from "./lib/gateway-child.ts";
import { warmUp } from "./lib/load.ts";
import { type MockModel, modelRoundTrip, openaiRunner, startMockModel } from "./lib/model.ts";
import { statRow, valueRow } from "./lib/report.ts";
import { envInt, sleep, stats } from "./lib/stats.ts";
import { ephemeralFloor } from "./modes.ts";

export const MODEL_ENV = {
  BENCH_MODEL_PACED: "section 8: model round trips, raw-fs floors and paced sends with the openai runner, interleaved one for one (default 300 each, after BENCH_WARMUP of each)",
};

interface Interleaved {
  readonly roundTrip: number[];
  readonly fsFloor: number[];
  readonly ack: number[];
  readonly final: number[];
  notFinal: number;
}

async function timed(work: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await work();
  return performance.now() - t0;
}

/** One paced send on a fresh key, to its end: its ack and final times go into `into`. */
async function pacedSend(client: BenchClient, key: string, into: Interleaved): Promise<void> {
  const sent = await chatSend(client, { sessionKey: key, message: "hello there", idempotencyKey: key });
  const end = sent.ack.ok ? await sent.end : undefined;
  if (sent.ack.ok) into.ack.push(sent.ack.at - sent.t0);
  if (end?.state === "final") into.final.push(end.at - sent.t0);
  else into.notFinal += 1;
}

/** After the warm-ups, `count` times: a model round trip, 2 ms, a raw-fs floor session, 2 ms, a paced send → final, 2 ms. */
async function interleave(model: MockModel, client: BenchClient, floorRoot: string, warmup: number, count: number): Promise<Interleaved> {
  const floor = modelRoundTrip(model);
  try {
    await warmUp(client, { count: warmup, prefix: "warm" });
    for (let i = 0; i < warmup; i++) await floor.once("hello");
    const result: Interleaved = { roundTrip: [], fsFloor: [], ack: [], final: [], notFinal: 0 };
    for (let i = 0; i < count; i++) {
      result.roundTrip.push(await floor.once("hello there"));
      await sleep(2);
      result.fsFloor.push(await timed(() => ephemeralFloor(floorRoot)));
      await sleep(2);
      await pacedSend(client, `paced-${i}`, result);
      await sleep(2);
    }
    return result;
  } finally {
    await floor.close();
  }
}

async function measure(dir: string, model: MockModel, warmup: number, count: number): Promise<Interleaved> {
  const floorRoot = path.join(dir, "raw-floor");
  await mkdir(floorRoot, { mode: 0o700 });
  const gateway = await startGatewayChild({ dir, implicit: "ephemeral", idleTtlMs: 0, runner: openaiRunner(model) });
  try {
    const client = await connectClient(gateway.url, gateway.token);
    try {
      return await interleave(model, client, floorRoot, warmup, count);
    } finally {
      await client.close();
    }
  } finally {
    await gateway.stop();
  }
}

export async function modelSection(ctx: SectionContext): Promise<void> {
  const warmup = envInt("BENCH_WARMUP", 50);
  const paced = envInt("BENCH_MODEL_PACED", 300);
  const model = await startMockModel();
  try {
    const measured = await measure(ctx.dir, model, warmup, paced);
    const [roundTrip, fsFloor, final] = [stats(measured.roundTrip), stats(measured.fsFloor), stats(measured.final)];
    ctx.rows.push(
      statRow("model.floor", "mock model round trip (openai runner's request, no gateway)", roundTrip, "ms", { note: "createOpenAIRunner().run() in the bench process: POST /chat/completions, stream: true, SSE read to [DONE]; the mock runs in the bench process" }),
      statRow("model.fs-floor", "raw-fs floor per implicit session, interleaved", fsFloor, "ms"),
      statRow("model.ack.paced", "chat.send ack, paced (openai runner)", stats(measured.ack), "ms"),
      statRow("model.final.paced", "send → final (openai runner → mock), paced", final, "ms", { upstream: "p50 184, p99 349 ms" }),
      valueRow("model.final-vs-floors", "  send → final p50 ÷ (raw-fs floor p50 + model round trip p50)", final.p50 / (fsFloor.p50 + roundTrip.p50), "x", {
        target: { on: "value", max: 2, text: "≤ 2×" },
      }),
    );
    Object.assign(ctx.details, { warmup, paced, notFinal: measured.notFinal, completions: model.completions(), roundTrip, fsFloor, ack: stats(measured.ack), final });
  } finally {
    await model.close();
  }
}
