import { describe, expect, it } from "vitest";
import { createSseDecoder } from "../../src/runners/sse.ts";

function decode(chunks: readonly Uint8Array[]): string[] {
  const events: string[] = [];
  const decoder = createSseDecoder((data) => events.push(data));
  for (const chunk of chunks) decoder.push(chunk);
  decoder.end();
  return events;
}

const body = Buffer.from(
  [
    ": keep-alive comment\n",
    'data: {"t":"héllo"}\n\n',
    "event: ignored\r\nid: 7\r\ndata: line one\r\ndata:line two\r\n\r\n",
    "data: 🦀 crab\r\rdata: [DONE]\n\n",
    "data: unterminated",
  ].join(""),
);
const expected = ['{"t":"héllo"}', "line one\nline two", "🦀 crab", "[DONE]", "unterminated"];

describe("SSE decoder", () => {
  it("decodes a whole body in one chunk", () => {
    expect(decode([body])).toEqual(expected);
  });

  it("gives the same events for every split point, including inside UTF-8 sequences and CRLF pairs", () => {
    for (let at = 1; at < body.length; at += 1) {
      expect(decode([body.subarray(0, at), body.subarray(at)]), `split at byte ${at}`).toEqual(expected);
    }
  });

  it("gives the same events one byte at a time", () => {
    const bytes = [...body].map((byte) => Uint8Array.of(byte));
    expect(decode(bytes)).toEqual(expected);
  });

  it("joins a 1 MiB line that arrives in 1,024 chunks (kept as pieces, searched once) into one event", () => {
    const line = "x".repeat(1 << 20);
    const whole = Buffer.from(`data: ${line}\r\n\r\ndata: next\n\n`);
    const chunks: Uint8Array[] = [];
    for (let at = 0; at < whole.length; at += 1024) chunks.push(whole.subarray(at, at + 1024));
    expect(decode(chunks)).toEqual([line, "next"]);
  });

  it("dispatches nothing for an empty body or comments only", () => {
    expect(decode([])).toEqual([]);
    expect(decode([Buffer.from(":ping\n\n:ping\n\n")])).toEqual([]);
  });
});
