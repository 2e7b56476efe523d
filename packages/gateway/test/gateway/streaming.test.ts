/**
 * What a long reply costs on the wire, measured by a real client on a real socket: the bytes of
 * the delta frames it receives, how many there are, and that the text adds up exactly.
 */
import { randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { CONFIG_DEFAULTS } from "../../src/config/index.ts";
import { SNAPSHOT_MAX_CHARS } from "../../src/runs/delta-coalescer.ts";
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

  it("regression (snapshots of a long reply): a 1 MiB reply reaches a client in about 3× its size, once per stream (chat deltas, agent deltas, the final message)", async () => {
    const t = await startTestGateway();
    const client = await connect(t.url);
    const size = 1024 * 1024;
    const runId = `mib-${randomUUID()}`;
    const bytes = { chatDelta: 0, agentAssistant: 0, final: 0, other: 0 };
    let deltaText = "";
    let finalText: string | undefined;
    const ended = new Promise<"final" | CloseInfo>((resolve) => {
      client.ws.on("message", (data: Buffer) => {
        const frame = JSON.parse(data.toString("utf8")) as RunFrame & { id?: string };
        const payload = frame.payload;
        if (frame.type === "res" && frame.id !== undefined && (payload as { runId?: string } | undefined)?.runId === runId) bytes.other += data.length;
        if (frame.type !== "event" || payload?.runId !== runId) return;
        if (frame.event === "chat" && payload.state === "delta") {
          bytes.chatDelta += data.length;
          deltaText += payload.deltaText ?? "";
        } else if (frame.event === "agent" && payload.stream === "assistant") {
          bytes.agentAssistant += data.length;
        } else if (frame.event === "chat" && payload.state === "final") {
          bytes.final += data.length;
          finalText = payload.message?.content.map((block) => block.text).join("");
          resolve("final");
        } else {
          bytes.other += data.length;
        }
      });
      void client.closed.then(resolve);
    });

    const res = await client.request("chat.send", { sessionKey: "mib-reply", message: `/echo:bytes ${size} 1024`, idempotencyKey: runId });
    expect(res.ok).toBe(true);
    expect(await withTimeout(ended, "the run's final chat event", 30_000)).toBe("final");
    expect(finalText).toHaveLength(size);
    expect(deltaText).toBe(finalText);
    // The reply's JSON-escaped size: what one copy of it costs inside a frame ("\n" is 2 bytes).
    const escaped = JSON.stringify(finalText).length - 2;

    // Each stream carries the reply once, plus snapshots bounded by a constant and an envelope per
    // frame (at most one frame per deltaMaxBytes, and the first chunk). Before the fix the
    // doubling snapshots went on to the end: about 2.9× the reply on each of the two streams.
    const frames = Math.ceil(size / CONFIG_DEFAULTS.gateway.deltaMaxBytes) + 2;
    const perStream = escaped + 1024 + 2 * SNAPSHOT_MAX_CHARS + frames * 400;
    expect(bytes.chatDelta).toBeLessThanOrEqual(perStream);
    expect(bytes.agentAssistant).toBeLessThanOrEqual(perStream);
    expect(bytes.final).toBeLessThanOrEqual(escaped + 400);
    const total = bytes.chatDelta + bytes.agentAssistant + bytes.final + bytes.other;
    expect(total / size).toBeLessThan(3.25);
  });
});
