/**
 * Throttling of failed authentication, as upstream's `auth-rate-limit` does it: failed connects
 * are counted per key over a sliding window; `maxAttempts` of them lock the key out for
 * `lockoutMs`; a success forgets the key. The key is the client's address, or `origin:<origin>`
 * for a connection that carries a browser Origin header (a page can reach loopback, so an origin
 * is never exempt). Loopback addresses are exempt when `exemptLoopback` (the local CLI is never
 * locked out of its own gateway). Memory is bounded: at most {@link MAX_KEYS} keys, the oldest
 * unlocked ones evicted first.
 */
import { isLoopbackAddress } from "../config/bind.ts";

export interface RateLimitSettings {
  readonly maxAttempts: number;
  readonly windowMs: number;
  readonly lockoutMs: number;
  readonly exemptLoopback: boolean;
}

/** Keys tracked at most; a flood of fresh addresses evicts the oldest unlocked entries. */
export const MAX_KEYS = 10_000;

export interface AuthRateLimiter {
  /** Milliseconds `key` stays locked out; 0 when it may try. */
  lockedFor(key: string): number;
  /** Counts a failed connect; returns the lockout it started (ms), or 0. */
  fail(key: string): number;
  /** Forgets `key` after a successful connect. */
  succeed(key: string): void;
}

interface Entry {
  /** Times (ms) of the failures inside the window. */
  failures: number[];
  lockedUntil: number;
}

/** The rate-limit key of a connection: its origin if it has one, else its address. */
export function rateLimitKey(address: string, origin: string | undefined): string {
  return origin === undefined ? `addr:${address}` : `origin:${origin}`;
}

function evictOldest(entries: Map<string, Entry>, now: number): void {
  for (const [key, entry] of entries) {
    if (entries.size <= MAX_KEYS) return;
    if (entry.lockedUntil <= now) entries.delete(key);
  }
}

export function createAuthRateLimiter(settings: RateLimitSettings, now: () => number = Date.now): AuthRateLimiter {
  const entries = new Map<string, Entry>();
  const exempt = (key: string): boolean => settings.exemptLoopback && key.startsWith("addr:") && isLoopbackAddress(key.slice(5));

  function live(key: string, at: number): Entry | undefined {
    const entry = entries.get(key);
    if (entry === undefined) return undefined;
    entry.failures = entry.failures.filter((time) => time > at - settings.windowMs);
    if (entry.lockedUntil <= at && entry.failures.length === 0) {
      entries.delete(key);
      return undefined;
    }
    return entry;
  }

  return {
    lockedFor(key) {
      const at = now();
      const entry = live(key, at);
      return entry === undefined ? 0 : Math.max(0, entry.lockedUntil - at);
    },
    fail(key) {
      if (exempt(key)) return 0;
      const at = now();
      let entry = live(key, at);
      if (entry === undefined) {
        entry = { failures: [], lockedUntil: 0 };
        entries.set(key, entry);
        evictOldest(entries, at);
      }
      if (entry.lockedUntil > at) return entry.lockedUntil - at;
      entry.failures.push(at);
      if (entry.failures.length < settings.maxAttempts) return 0;
      entry.failures = [];
      entry.lockedUntil = at + settings.lockoutMs;
      return settings.lockoutMs;
    },
    succeed(key) {
      entries.delete(key);
    },
  };
}
