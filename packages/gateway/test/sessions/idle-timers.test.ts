/**
 * The idle deadlines of every session on one timer (sessions/idle-timers.ts): keys fire in
 * deadline order, re-arming moves a key to the back, cancel disarms, and however many keys are
 * armed there is one pending timer.
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createIdleTimers } from "../../src/sessions/idle-timers.ts";

beforeEach(() => {
  vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
});

afterEach(() => {
  vi.useRealTimers();
});

describe("idle timers", () => {
  it("fires each armed key once, ttl after its last arm, in deadline order, on one pending timer", () => {
    const fired: string[] = [];
    const timers = createIdleTimers(1000, (key) => fired.push(key));
    timers.arm("a");
    vi.advanceTimersByTime(100);
    timers.arm("b");
    vi.advanceTimersByTime(100);
    timers.arm("c");
    timers.arm("a"); // re-armed at 200: now due at 1200, after b (1100) and c (1200, armed first)
    expect(vi.getTimerCount()).toBe(1);
    expect(timers.size).toBe(3);
    vi.advanceTimersByTime(899);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual(["b"]);
    vi.advanceTimersByTime(100);
    expect(fired).toEqual(["b", "c", "a"]);
    expect(timers.size).toBe(0);
    expect(vi.getTimerCount()).toBe(0);
  });

  it("cancel disarms a key, and the timer follows the next one due", () => {
    const fired: string[] = [];
    const timers = createIdleTimers(500, (key) => fired.push(key));
    timers.arm("a");
    vi.advanceTimersByTime(10);
    timers.arm("b");
    expect(timers.cancel("a")).toBe(true);
    expect(timers.cancel("a")).toBe(false);
    expect(timers.has("a")).toBe(false);
    vi.advanceTimersByTime(499);
    expect(fired).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(fired).toEqual(["b"]);
    timers.arm("c");
    timers.cancel("c");
    expect(vi.getTimerCount()).toBe(0);
  });

  it("fires 10,000 keys armed in one instant together, on one timer", () => {
    let fired = 0;
    const timers = createIdleTimers(60_000, () => (fired += 1));
    for (let i = 0; i < 10_000; i++) timers.arm(`k${i}`);
    expect(vi.getTimerCount()).toBe(1);
    vi.advanceTimersByTime(60_000);
    expect(fired).toBe(10_000);
  });

  it("a key armed again from its own callback waits a whole ttl more", () => {
    const fired: number[] = [];
    const timers = createIdleTimers(100, (key) => {
      fired.push(performance.now());
      if (fired.length < 3) timers.arm(key);
    });
    timers.arm("again");
    vi.advanceTimersByTime(1000);
    expect(fired).toEqual([100, 200, 300]);
  });
});
