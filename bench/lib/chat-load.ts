/**
 * The load shapes the latency measures share, for any gateway that speaks protocol v4 (ocgw or
 * the real OpenClaw): warm-up sends, paced sends (one at a time, each to its end) and a burst
 * (sends written back to back, then every end awaited). Times are client-side, from
 * `chatSend`'s write to the frame's arrival.
 */
import { type BenchClient, type EndState, chatSend } from "./client.ts";
import { sleep } from "./stats.ts";

export interface LoadResult {
  /** Ack latency of each accepted send (ms). */
  readonly ack: number[];
  /** Send → final of each run that ended final (ms). */
  readonly final: number[];
  /** Sends refused at the ack. */
  readonly refused: number;
  /** How the accepted runs ended, by state. */
  readonly ends: Record<EndState, number>;
}

export interface BurstResult extends LoadResult {
  /** First write → the last end event of the burst (ms). */
  readonly allEndedMs: number;
}

const noEnds = (): Record<EndState, number> => ({ final: 0, error: 0, aborted: 0 });

/** `count` sends on fresh keys `<prefix>-<i>`, each awaited to its end; nothing measured. */
export async function warmUp(client: BenchClient, prefix: string, count: number, endTimeoutMs = 60_000): Promise<void> {
  for (let i = 0; i < count; i++) {
    const sent = await chatSend(client, { sessionKey: `${prefix}-${i}`, message: "hello", idempotencyKey: `${prefix}-${i}` }, endTimeoutMs);
    if (sent.ack.ok) await sent.end;
  }
}

/** `count` sends on fresh keys, one at a time: each waits for the previous one's end, then `gapMs`. */
export async function pacedSends(client: BenchClient, prefix: string, count: number, options: { gapMs?: number; endTimeoutMs?: number } = {}): Promise<LoadResult> {
  const ack: number[] = [];
  const final: number[] = [];
  const ends = noEnds();
  let refused = 0;
  for (let i = 0; i < count; i++) {
    const sent = await chatSend(client, { sessionKey: `${prefix}-${i}`, message: "hello there", idempotencyKey: `${prefix}-${i}` }, options.endTimeoutMs);
    if (!sent.ack.ok) {
      refused += 1;
      continue;
    }
    ack.push(sent.ack.at - sent.t0);
    const end = await sent.end;
    ends[end.state] += 1;
    if (end.state === "final") final.push(end.at - sent.t0);
    await sleep(options.gapMs ?? 2);
  }
  return { ack, final, refused, ends };
}

/** `count` sends on fresh keys written back to back, then every end awaited. */
export async function burstSends(client: BenchClient, prefix: string, count: number, endTimeoutMs = 60_000): Promise<BurstResult> {
  const pending = Array.from({ length: count }, (_, i) => chatSend(client, { sessionKey: `${prefix}-${i}`, message: "hello there", idempotencyKey: `${prefix}-${i}` }, endTimeoutMs));
  const ack: number[] = [];
  const final: number[] = [];
  const ends = noEnds();
  let refused = 0;
  let first = Number.POSITIVE_INFINITY;
  let last = Number.NaN;
  for (const sent of await Promise.all(pending)) {
    first = Math.min(first, sent.t0);
    if (!sent.ack.ok) {
      refused += 1;
      continue;
    }
    ack.push(sent.ack.at - sent.t0);
    const end = await sent.end;
    ends[end.state] += 1;
    if (end.state === "final") final.push(end.at - sent.t0);
    last = Number.isNaN(last) ? end.at : Math.max(last, end.at);
  }
  return { ack, final, refused, ends, allEndedMs: last - first };
}
