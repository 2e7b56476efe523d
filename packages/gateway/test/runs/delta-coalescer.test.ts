/**
 * The coalescer alone, on fake timers: windows, the size valve, the doubling snapshots and the
 * linear bound they give, whatever the chunking.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { type CoalescedDelta, SNAPSHOT_MAX_CHARS, createDeltaCoalescer } from "../../src/runs/delta-coalescer.ts";

function collect(windowMs: number, maxBytes: number) {
  const out: CoalescedDelta[] = [];
  const coalescer = createDeltaCoalescer({ windowMs, maxBytes, emit: (delta) => out.push(delta) });
  return { out, coalescer };
}

/** Characters the deltas put on the wire: their own text plus their snapshots. */
function wireChars(deltas: readonly CoalescedDelta[]): number {
  return deltas.reduce((sum, d) => sum + d.delta.length + (d.snapshot?.length ?? 0), 0);
}

describe("delta coalescer", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("sends the first chunk at once, then at most one delta per window", () => {
    const { out, coalescer } = collect(100, 1 << 20);
    coalescer.push("a");
    expect(out).toEqual([{ delta: "a", snapshot: "a" }]);
    coalescer.push("b");
    coalescer.push("c");
    vi.advanceTimersByTime(99);
    expect(out).toHaveLength(1);
    vi.advanceTimersByTime(1);
    expect(out.map((d) => d.delta)).toEqual(["a", "bc"]);
    // The window reopened with that delta: the next chunk waits for its end.
    coalescer.push("d");
    expect(out).toHaveLength(2);
    vi.advanceTimersByTime(100);
    expect(out.map((d) => d.delta)).toEqual(["a", "bc", "d"]);
    // A window that ends with nothing pending closes: the next chunk goes out at once.
    vi.advanceTimersByTime(100);
    coalescer.push("e");
    expect(out.map((d) => d.delta)).toEqual(["a", "bc", "d", "e"]);
  });

  it("sends pending text once it reaches maxBytes of UTF-8, inside the window", () => {
    const { out, coalescer } = collect(100, 8);
    coalescer.push("go");
    coalescer.push("ééé"); // 6 bytes: 6 pending
    expect(out).toHaveLength(1);
    coalescer.push("xy"); // 8 bytes pending
    expect(out.map((d) => d.delta)).toEqual(["go", "éééxy"]);
  });

  it("flush sends what is pending and closes the window; empty chunks send nothing", () => {
    const { out, coalescer } = collect(100, 1 << 20);
    coalescer.flush();
    coalescer.push("");
    expect(out).toEqual([]);
    coalescer.push("one");
    coalescer.push(" two");
    coalescer.flush();
    expect(out.map((d) => d.delta)).toEqual(["one", " two"]);
    vi.advanceTimersByTime(1000);
    expect(out).toHaveLength(2);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("window 0 merges the chunks that arrive together", () => {
    const { out, coalescer } = collect(0, 1 << 20);
    coalescer.push("a");
    coalescer.push("b");
    coalescer.push("c");
    vi.advanceTimersByTime(0);
    expect(out.map((d) => d.delta)).toEqual(["a", "bc"]);
  });

  it("attaches the whole reply so far only when it has doubled since the last snapshot", () => {
    const { out, coalescer } = collect(100, 4);
    for (const chunk of ["ab", "cdef", "g", "hijk", "lmnopqrstuvw"]) coalescer.push(chunk);
    coalescer.flush();
    expect(out).toEqual([
      { delta: "ab", snapshot: "ab" },
      { delta: "cdef", snapshot: "abcdef" },
      { delta: "ghijk" },
      { delta: "lmnopqrstuvw", snapshot: "abcdefghijklmnopqrstuvw" },
    ]);
  });

  it("regression (snapshots of a long reply): stops attaching snapshots past SNAPSHOT_MAX_CHARS, so a long reply costs its length once plus a constant", () => {
    // Before: the doubling schedule went on to the end, and the snapshots of a 1 MiB reply added
    // up to another 1–2 MiB on each of the chat and agent streams.
    const { out, coalescer } = collect(100, 1024);
    const chunk = "0123456789abcdef".repeat(16); // 256 characters
    const chunks = (1024 * 1024) / chunk.length;
    for (let i = 0; i < chunks; i += 1) coalescer.push(chunk);
    coalescer.flush();
    const reply = chunk.repeat(chunks);
    expect(out.map((d) => d.delta).join("")).toBe(reply);
    const snapshots = out.filter((d) => d.snapshot !== undefined).map((d) => (d.snapshot as string).length);
    expect(snapshots[0]).toBe(chunk.length);
    expect(Math.max(...snapshots)).toBeLessThanOrEqual(SNAPSHOT_MAX_CHARS);
    expect(wireChars(out)).toBeLessThan(reply.length + chunk.length + 2 * SNAPSHOT_MAX_CHARS);
  });

  it("keeps a reply's wire text under 3× its length, one-character chunks included", () => {
    for (const [windowMs, maxBytes] of [
      [100, 1],
      [100, 16],
      [0, 1 << 20],
    ] as const) {
      const { out, coalescer } = collect(windowMs, maxBytes);
      let reply = "";
      for (let i = 0; i < 5000; i += 1) {
        const chunk = String.fromCharCode(97 + (i % 26));
        reply += chunk;
        coalescer.push(chunk);
        if (i % 7 === 0) vi.advanceTimersByTime(windowMs === 0 ? 0 : 30);
      }
      coalescer.flush();
      expect(out.map((d) => d.delta).join("")).toBe(reply);
      let sent = "";
      for (const d of out) {
        sent += d.delta;
        if (d.snapshot !== undefined) expect(d.snapshot).toBe(sent);
      }
      expect(wireChars(out), `window ${windowMs} ms, maxBytes ${maxBytes}`).toBeLessThan(3 * reply.length);
    }
  });
});
