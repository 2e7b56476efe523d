/**
 * Measure 7: the openai runner against a loopback mock model. The model round-trip floor (the
 * runner's request from this process, no gateway) and paced send → final through a gateway child
 * with that runner, interleaved one for one, then the raw-fs floor per implicit session, so the
 * target (p50 ≤ 2 × (raw-fs floor + model round trip)) compares numbers of one section.
 */
import { rawFloor } from "./latency.ts";
import { chatSend, connectClient } from "./lib/client.ts";
import type { SectionContext } from "./lib/context.ts";
import { startGatewayChild } from "./lib/gateway-child.ts";
import { warmUp } from "./lib/load.ts";
import { type MockModel, modelRoundTrip, openaiRunner, startMockModel } from "./lib/model.ts";
import { statRow, valueRow } from "./lib/report.ts";
import { envInt, sleep, stats } from "./lib/stats.ts";

export const MODEL_ENV = {
  BENCH_MODEL_PACED: "section 7: model round trips and paced sends with the openai runner, interleaved one for one (default 300 each, after BENCH_WARMUP of each)",
};

interface Interleaved {
  readonly roundTrip: number[];
  readonly ack: number[];
  readonly final: number[];
  readonly notFinal: number;
}

/** `count` times: one model round trip from this process, 2 ms, one paced send → final through the gateway, 2 ms. */
async function interleave(model: MockModel, url: string, token: string, warmup: number, count: number): Promise<Interleaved> {
  const floor = modelRoundTrip(model);
  const client = await connectClient(url, token);
  try {
    await warmUp(client, { count: warmup, prefix: "warm" });
    for (let i = 0; i < warmup; i++) await floor.once("hello");
    const result = { roundTrip: [] as number[], ack: [] as number[], final: [] as number[], notFinal: 0 };
    for (let i = 0; i < count; i++) {
      result.roundTrip.push(await floor.once("hello there"));
      await sleep(2);
      const sent = await chatSend(client, { sessionKey: `paced-${i}`, message: "hello there", idempotencyKey: `paced-${i}` });
      const end = sent.ack.ok ? await sent.end : undefined;
      if (sent.ack.ok) result.ack.push(sent.ack.at - sent.t0);
      if (end?.state === "final") result.final.push(end.at - sent.t0);
      else result.notFinal += 1;
      await sleep(2);
    }
    return result;
  } finally {
    await client.close();
    await floor.close();
  }
}

export async function modelSection(ctx: SectionContext): Promise<void> {
  const warmup = envInt("BENCH_WARMUP", 50);
  const paced = envInt("BENCH_MODEL_PACED", 300);
  const model = await startMockModel();
  try {
    const gateway = await startGatewayChild({ dir: ctx.dir, implicit: "ephemeral", idleTtlMs: 0, runner: openaiRunner(model) });
    let measured: Interleaved;
    try {
      measured = await interleave(model, gateway.url, gateway.token, warmup, paced);
    } finally {
      await gateway.stop();
    }
    const floor = await rawFloor(ctx.dir, paced, 0);
    const [roundTrip, final, fsFloor] = [stats(measured.roundTrip), stats(measured.final), stats(floor.paced)];
    ctx.rows.push(
      statRow("model.floor", "mock model round trip (openai runner's request, no gateway)", roundTrip, "ms", { note: "createOpenAIRunner().run() in the bench process: POST /chat/completions, stream: true, SSE read to [DONE]; the mock runs in the bench process" }),
      statRow("model.ack.paced", "chat.send ack, paced (openai runner)", stats(measured.ack), "ms"),
      statRow("model.final.paced", "send → final (openai runner → mock), paced", final, "ms", { upstream: "p50 184, p99 349 ms" }),
      statRow("model.fs-floor", "  raw-fs floor per implicit session, paced", fsFloor, "ms"),
      valueRow("model.final-vs-floors", "  send → final p50 ÷ (raw-fs floor p50 + model round trip p50)", final.p50 / (fsFloor.p50 + roundTrip.p50), "x", {
        target: { on: "value", max: 2, text: "≤ 2×" },
      }),
    );
    Object.assign(ctx.details, { warmup, paced, notFinal: measured.notFinal, completions: model.completions(), roundTrip, ack: stats(measured.ack), final, fsFloor });
  } finally {
    await model.close();
  }
}
