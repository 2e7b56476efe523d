/**
 * The bench's load patterns over one client, for any gateway that speaks protocol v4 (ocgw or the
 * real OpenClaw): warm-up sends, paced sends (one at a time), a burst (written back to back) and
 * filling a gateway with live sessions (a batch in flight at a time). Every send is on a fresh key.
 */
import { type BenchClient, type RunEnd, type Sent, chatSend } from "./client.ts";
import { sleep } from "./stats.ts";

export interface Paced {
  /** ack − write, ms, per accepted send. */
  ack: number[];
  /** final − write, ms, per send that ended `final`. */
  final: number[];
  refused: number;
}

/** `count` sends on fresh keys `<prefix>-<i>`, each awaited to its end; nothing measured. */
export async function warmUp(client: BenchClient, options: { count: number; prefix: string; endTimeoutMs?: number }): Promise<void> {
  for (let i = 0; i < options.count; i++) {
    const key = `${options.prefix}-${i}`;
    const sent = await chatSend(client, { sessionKey: key, message: "hello", idempotencyKey: key }, options.endTimeoutMs);
    if (sent.ack.ok) await sent.end;
  }
}

/** `count` sends one at a time, each waited to its end (at most `endTimeoutMs`, default 60 s), `gapMs` apart. */
export async function pacedSends(
  client: BenchClient,
  options: { count: number; prefix: string; gapMs?: number; endTimeoutMs?: number; between?: () => Promise<void> },
): Promise<Paced> {
  const result: Paced = { ack: [], final: [], refused: 0 };
  for (let i = 0; i < options.count; i++) {
    const key = `${options.prefix}-${i}`;
    await tally(result, await chatSend(client, { sessionKey: key, message: "hello there", idempotencyKey: key }, options.endTimeoutMs));
    // What is measured beside each send (a floor), so both see the same machine state.
    await options.between?.();
    await sleep(options.gapMs ?? 2);
  }
  return result;
}

/** Counts one send into `result`: refused, or its ack time and, once it ended `final`, its send → final. */
async function tally(result: Paced, sent: Sent): Promise<RunEnd | undefined> {
  if (!sent.ack.ok) {
    result.refused += 1;
    return undefined;
  }
  result.ack.push(sent.ack.at - sent.t0);
  const end = await sent.end;
  if (end.state === "final") result.final.push(end.at - sent.t0);
  return end;
}

export interface Burst extends Paced {
  /** The first write → the last end event of the burst, ms. */
  allEndedMs: number;
}

/** `count` sends written back to back, then every end awaited (each at most `endTimeoutMs`). */
export async function burstSends(client: BenchClient, options: { count: number; prefix: string; endTimeoutMs?: number }): Promise<Burst> {
  const pending: Promise<Sent>[] = [];
  for (let i = 0; i < options.count; i++) {
    const key = `${options.prefix}-${i}`;
    pending.push(chatSend(client, { sessionKey: key, message: "hello there", idempotencyKey: key }, options.endTimeoutMs));
  }
  const result: Burst = { ack: [], final: [], refused: 0, allEndedMs: Number.NaN };
  let first = Number.POSITIVE_INFINITY;
  let last = Number.NEGATIVE_INFINITY;
  for (const sent of await Promise.all(pending)) {
    first = Math.min(first, sent.t0);
    const end = await tally(result, sent);
    if (end !== undefined) last = Math.max(last, end.at);
  }
  if (Number.isFinite(last)) result.allEndedMs = last - first;
  return result;
}

/**
 * Fills a gateway with live implicit sessions: `count` `chat.send`, `batch` in flight at a time,
 * each waited to its end (the gateway's idleTtlMs keeps their workspaces).
 */
export interface Filled {
  finals: number;
  failed: number;
  ms: number;
}

export async function fillLiveSessions(client: BenchClient, options: { count: number; batch: number; deadline: number; prefix: string }): Promise<Filled> {
  const started = performance.now();
  let finals = 0;
  let failed = 0;
  for (let start = 0; start < options.count && performance.now() < options.deadline; start += options.batch) {
    const sends: Promise<Sent>[] = [];
    for (let i = start; i < Math.min(options.count, start + options.batch); i++) {
      const key = `${options.prefix}-${i}`;
      sends.push(chatSend(client, { sessionKey: key, message: "hello there", idempotencyKey: key }, 120_000));
    }
    for (const sent of await Promise.all(sends)) {
      if (!sent.ack.ok) {
        failed += 1;
        continue;
      }
      if ((await sent.end).state === "final") finals += 1;
      else failed += 1;
    }
  }
  return { finals, failed, ms: performance.now() - started };
}
