/**
 * What a long reply costs on the wire, measured by a real client on a real socket: the bytes of
 * the delta frames it receives, how many there are, and that the text adds up exactly.
 */
import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { CONFIG_DEFAULTS } from "../../src/config/index.ts";
import { withTimeout } from "../protocol/helpers.ts";
import type { CloseInfo } from "../protocol/helpers.ts";
import { connect, startTestGateway } from "./harness.ts";

interface RunFrame {
  type: string;
  event?: string;
  payload?: {
    runId?: string;
    state?: string;
    stream?: string;
    deltaText?: string;
    message?: { content: { text: string }[] };
    data?: { delta?: string; text?: string };
  };
}

/** `count` distinct 31-character words joined by spaces: 32 × count − 1 characters. */
function words(count: number): string {
  return Array.from({ length: count }, (_, i) => `${i.toString(36).padStart(6, "0")}-lorem-ipsum-dolor-sit-amet`).join(" ");
}

describe("streaming a long reply", () => {
  it("regression (defect 4, quadratic streaming): a 192 KiB echo reply costs at most 4× its length in delta frames, a bounded number of them, and its text is exact", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    const message = words(6144); // 196,607 characters, one echo delta per word
    const reply = `Echo: ${message}`;
    const runId = `long-${randomUUID()}`;

    const chatDeltas: string[] = [];
    const agentDeltas: string[] = [];
    let chatDeltaBytes = 0;
    let agentDeltaBytes = 0;
    let finalText: string | undefined;
    const budget = 4 * reply.length;
    const ended = new Promise<"final" | "over budget" | CloseInfo>((resolve) => {
      client.ws.on("message", (data: Buffer) => {
        const frame = JSON.parse(data.toString("utf8")) as RunFrame;
        const payload = frame.payload;
        if (frame.type !== "event" || payload?.runId !== runId) return;
        if (frame.event === "chat" && payload.state === "delta") {
          chatDeltaBytes += data.length;
          chatDeltas.push(payload.deltaText ?? "");
        } else if (frame.event === "agent" && payload.stream === "assistant") {
          agentDeltaBytes += data.length;
          agentDeltas.push(payload.data?.delta ?? "");
        } else if (frame.event === "chat" && payload.state === "final") {
          finalText = payload.message?.content.map((block) => block.text).join("");
          resolve("final");
        }
        // Stop early rather than read the gigabytes a quadratic stream would send.
        if (chatDeltaBytes > budget || agentDeltaBytes > budget) resolve("over budget");
      });
      void client.closed.then(resolve);
    });

    const res = await client.request("chat.send", { sessionKey: "long-reply", message, idempotencyKey: runId });
    expect(res.ok).toBe(true);
    // Before the fix every delta carried the whole reply so far: "over budget" after about 200 words.
    expect(await withTimeout(ended, "the run's final chat event", 20_000)).toBe("final");

    expect(finalText).toBe(reply);
    expect(chatDeltas.join("")).toBe(reply);
    expect(agentDeltas.join("")).toBe(reply);
    expect(chatDeltaBytes).toBeLessThanOrEqual(budget);
    expect(agentDeltaBytes).toBeLessThanOrEqual(budget);
    // The echo reply arrives in one synchronous burst: the first word, one delta per
    // deltaMaxBytes of text, and what is left when the run ends (no clock involved).
    const bound = Math.ceil(reply.length / CONFIG_DEFAULTS.gateway.deltaMaxBytes) + 2;
    expect(chatDeltas.length).toBeLessThanOrEqual(bound);
    expect(agentDeltas.length).toBeLessThanOrEqual(bound);
  });
});
