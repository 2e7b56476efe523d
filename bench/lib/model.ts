/**
 * The loopback mock model (the real-OpenClaw suite's, packages/gateway/test/openclaw/mock-model.ts)
 * as the bench uses it: the openai runner's config block pointing at it, and its round-trip floor,
 * the runner's own request made from this process with no gateway in between.
 */
import { createOpenAIRunner } from "../../packages/gateway/src/runners/openai.ts";
import { MOCK_MODEL_ID, type MockModel } from "../../packages/gateway/test/openclaw/mock-model.ts";
import type { RunnerConfig } from "./gateway-child.ts";

export { type MockModel, startMockModel } from "../../packages/gateway/test/openclaw/mock-model.ts";

/** The `runner` block of a gateway child that uses the openai runner against `model`. */
export function openaiRunner(model: MockModel): RunnerConfig {
  return { kind: "openai", openai: { baseUrl: model.baseUrl, model: MOCK_MODEL_ID } };
}

/**
 * One model round trip as the gateway's openai runner makes it for a fresh implicit session:
 * `createOpenAIRunner(...).run()` with no history, so the same `POST <baseUrl>/chat/completions`
 * (`stream: true`, one user message), the same fetch (undici, keep-alive pool of this process) and
 * the same SSE reading up to `[DONE]`. Resolves with its time in ms.
 */
export function modelRoundTrip(model: MockModel): { once(message: string): Promise<number>; close(): Promise<void> } {
  const runner = createOpenAIRunner({ baseUrl: model.baseUrl, model: MOCK_MODEL_ID });
  let n = 0;
  return {
    async once(message) {
      n += 1;
      const t0 = performance.now();
      const output = await runner.run({ runId: `floor-${n}`, sessionKey: `agent:main:floor-${n}`, message, history: [], cwd: null, signal: new AbortController().signal, onDelta: () => undefined });
      const ms = performance.now() - t0;
      if (output.text === "") throw new Error("the mock model's reply was empty");
      return ms;
    },
    close: () => runner.close(),
  };
}
