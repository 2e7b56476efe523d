/**
 * Measure 6: pre-auth flood and token compare.
 *
 * Flood: one gateway child; its idle RSS, then 16 WebSockets (gateway.maxUnauthenticatedConnections)
 * that each wait for `connect.challenge` and send one 24 MiB binary frame without ever sending
 * `connect`. The gateway must refuse each frame from its header (ws `maxPayload` is
 * `gateway.preauthMaxBytes` before connect, close 1009) without reading it: its peak RSS (VmHWM,
 * reset through /proc/<pid>/clear_refs just before) may grow at most 20 MB over idle. RSS is read
 * from /proc, so on other platforms only the close codes and the time are reported.
 *
 * Token compare: `secretsEqual` (handshake.ts) timed in this process for a 43-char token against
 * the right token, same-length wrong ones (no common prefix, a 42-char common prefix) and other
 * lengths, interleaved in rounds of batches. Report only: both sides are hashed (SHA-256) before a
 * constant-time compare, so neither a shared prefix nor the token's length should show.
 */
import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import * as path from "node:path";
import { WebSocket } from "ws";
import { secretsEqual } from "../packages/gateway/src/protocol/handshake.ts";
import { connectClient } from "./lib/client.ts";
import type { SectionContext } from "./lib/context.ts";
import { type GatewayChild, startGatewayChild } from "./lib/gateway-child.ts";
import { readRss, sampleRss } from "./lib/processes.ts";
import { format, statRow, valueRow } from "./lib/report.ts";
import { envInt, median, sleep, stats, withTimeout } from "./lib/stats.ts";

export const SECURITY_ENV = { BENCH_COMPARES: "secretsEqual calls per case in section 6 (default 200000)" };

const MB = 1024;
const SOCKETS = 16;
const FRAME_BYTES = 24 * 1024 * 1024;
const CLOSE_TOO_BIG = 1009;
const PEAK_TARGET_MB = 20;
const BATCH = 1_000;

/**
 * A socket that has received its `connect.challenge` (and has sent nothing). Its masking key is
 * all zeros (valid: the key is arbitrary), so ws writes a frame without first making a masked copy
 * of it: masking 16 × 24 MiB in JavaScript takes ~2 s of this process on a 2-core machine and
 * would be timed as the gateway's.
 */
function openUnauthenticated(url: string): Promise<WebSocket> {
  const ws = new WebSocket(url, { perMessageDeflate: false, generateMask: (mask) => void mask.fill(0) });
  const challenged = new Promise<WebSocket>((resolve, reject) => {
    ws.once("message", (data) => {
      const frame = JSON.parse(String(data)) as { type?: string; event?: string };
      if (frame.type === "event" && frame.event === "connect.challenge") resolve(ws);
      else reject(new Error(`first frame was not connect.challenge: ${String(data).slice(0, 200)}`));
    });
    ws.once("error", reject);
    ws.once("close", (code) => reject(new Error(`socket closed (${code}) before connect.challenge`)));
  });
  return withTimeout(challenged, 10_000, "connect.challenge").catch((error: unknown) => {
    ws.terminate();
    throw error;
  });
}

/** Sends `frame` and resolves with the close code (null if the socket was still open after 30 s). */
function sendAndAwaitClose(ws: WebSocket, frame: Buffer): Promise<{ code: number | null; reason: string; at: number }> {
  // Writing into a socket the server cut off fails with EPIPE/ECONNRESET; the close still follows.
  ws.on("error", () => undefined);
  const closed = new Promise<{ code: number | null; reason: string; at: number }>((resolve) =>
    ws.once("close", (code, reason) => resolve({ code, reason: reason.toString("utf8"), at: performance.now() })),
  );
  ws.send(frame, { binary: true });
  return withTimeout(closed, 30_000, "close after the oversized frame").catch(() => {
    ws.terminate();
    return { code: null, reason: "still open after 30 s (terminated)", at: performance.now() };
  });
}

interface Flood {
  codes: (number | null)[];
  reasons: string[];
  /** From the first send to the last close. */
  closedMs: number;
  /** Until every `send` call had returned. */
  sentMs: number;
  /** Each socket's close, from the first send. */
  closesMs: number[];
}

/** SOCKETS sockets, all challenged first, then one FRAME_BYTES binary frame each, back to back. */
async function flood(url: string): Promise<Flood> {
  const sockets: WebSocket[] = [];
  try {
    for (let i = 0; i < SOCKETS; i++) sockets.push(await openUnauthenticated(url));
    // One buffer for all: with a zero masking key ws writes it as it is, never modified.
    const frame = Buffer.alloc(FRAME_BYTES, 0x61);
    const t0 = performance.now();
    const pending = sockets.map((ws) => sendAndAwaitClose(ws, frame));
    const sentMs = performance.now() - t0;
    const closes = await Promise.all(pending);
    const closesMs = closes.map((c) => Math.round(c.at - t0));
    return { codes: closes.map((c) => c.code), reasons: [...new Set(closes.map((c) => c.reason || "(none)"))], closedMs: Math.max(...closesMs), sentMs, closesMs };
  } finally {
    for (const ws of sockets) if (ws.readyState !== WebSocket.CLOSED) ws.terminate();
  }
}

/** Resets the process's VmHWM to its current RSS (Linux ≥ 4.0, same user); false if refused. */
async function resetPeak(pid: number): Promise<boolean> {
  return writeFile(`/proc/${pid}/clear_refs`, "5").then(
    () => true,
    () => false,
  );
}

/** Reads VmRSS every 20 ms; the returned function stops that and returns the highest reading (KiB). */
function watchRss(pid: number): () => number {
  let max = Number.NaN;
  const timer = setInterval(
    () =>
      void readRss(pid).then(
        (rss) => void (max = Number.isNaN(max) ? rss.rssKb : Math.max(max, rss.rssKb)),
        () => undefined,
      ),
    20,
  );
  return () => {
    clearInterval(timer);
    return max;
  };
}

/** True if a fresh client can still connect and get an ok `health`. */
async function healthOk(gateway: GatewayChild): Promise<boolean> {
  const client = await connectClient(gateway.url, gateway.token);
  try {
    return (await client.request("health", {}, 10_000)).ok;
  } finally {
    await client.close();
  }
}

function codesText(codes: readonly (number | null)[]): string {
  const counts = new Map<string, number>();
  for (const code of codes) counts.set(String(code ?? "none"), (counts.get(String(code ?? "none")) ?? 0) + 1);
  return [...counts].map(([code, n]) => `${code} ×${n}`).join(", ");
}

function floodRows(ctx: SectionContext, result: Flood, rss: { idleKb: number; peakKb: number; sampledKb: number; afterKb: number; reset: boolean } | undefined, health: boolean): void {
  const notTooBig = result.codes.filter((code) => code !== CLOSE_TOO_BIG).length;
  const label = `${SOCKETS} × ${FRAME_BYTES / 2 ** 20} MiB`;
  if (rss === undefined) {
    ctx.rows.push(valueRow("preauth.rss", `pre-auth flood RSS (${label})`, Number.NaN, "MB", { display: "skipped", note: `reads /proc/<pid>/status, Linux only; this is ${process.platform}` }));
  } else {
    ctx.rows.push(
      valueRow("preauth.idle", "gateway RSS, idle before a pre-auth flood", rss.idleKb / MB, "MB"),
      valueRow("preauth.peak", `  peak RSS growth, ${label} frames before connect`, (rss.peakKb - rss.idleKb) / MB, "MB", {
        target: { on: "value", max: PEAK_TARGET_MB, text: `≤ +${PEAK_TARGET_MB} MB over idle` },
        note: `VmHWM ${format(rss.peakKb / MB, "MB")}${rss.reset ? " (reset to current RSS just before)" : " (could not be reset: includes the start-up peak)"}; highest VmRSS read every 20 ms ${format(rss.sampledKb / MB, "MB")}`,
      }),
      valueRow("preauth.after", "  RSS 1 s after the last close", rss.afterKb / MB, "MB", { note: `health ${health ? "ok" : "FAILED"} afterwards` }),
    );
  }
  ctx.rows.push(
    valueRow("preauth.codes", `  of ${SOCKETS} sockets, closed with a code other than 1009`, notTooBig, "count", {
      target: { on: "value", max: 0, text: "0 (all 1009)" },
      note: `close codes: ${codesText(result.codes)}; reason: ${result.reasons.join(" | ")}`,
    }),
    valueRow("preauth.closed", `  first send → all ${SOCKETS} closed`, result.closedMs, "ms", {
      note: `the ${SOCKETS} send() calls returned after ${format(result.sentMs, "ms")}; closes from ${format(Math.min(...result.closesMs), "ms")} to ${format(result.closedMs, "ms")}`,
    }),
  );
}

async function preauthFlood(ctx: SectionContext): Promise<void> {
  const linux = process.platform === "linux";
  // Warm the shared compile cache, so idle is the usual idle (every start after the first).
  await (await startGatewayChild({ dir: path.join(ctx.dir, "gateway-prime") })).stop();
  const gateway = await startGatewayChild({ dir: path.join(ctx.dir, "gateway") });
  try {
    await sleep(500);
    const idleKb = linux ? await sampleRss(gateway.pid) : Number.NaN;
    const reset = linux && (await resetPeak(gateway.pid));
    const stopWatch = linux ? watchRss(gateway.pid) : () => Number.NaN;
    const result = await flood(gateway.url);
    const sampledKb = stopWatch();
    const peakKb = linux ? (await readRss(gateway.pid)).peakKb : Number.NaN;
    await sleep(1_000);
    const afterKb = linux ? await sampleRss(gateway.pid) : Number.NaN;
    const health = await healthOk(gateway);
    const rss = linux ? { idleKb, peakKb, sampledKb, afterKb, reset } : undefined;
    ctx.log(`  flood: codes ${codesText(result.codes)} in ${result.closedMs.toFixed(0)} ms${rss ? `; RSS idle ${format(idleKb / MB, "MB")}, peak ${format(peakKb / MB, "MB")}, after ${format(afterKb / MB, "MB")}` : ""}`);
    floodRows(ctx, result, rss, health);
    ctx.details.flood = { sockets: SOCKETS, frameBytes: FRAME_BYTES, platform: process.platform, ...result, rss: rss ?? null, healthAfter: health };
  } finally {
    await gateway.stop();
  }
}

interface CompareCase {
  readonly id: string;
  readonly label: string;
  readonly given: string;
  /** Same length as the token, and wrong: these are compared with each other. */
  readonly sameLengthWrong: boolean;
}

/** The cases for a 43-char token (base64url of 32 random bytes, as a generated token). */
function compareCases(token: string): CompareCase[] {
  const other = (char: string): string => (char === "A" ? "B" : "A");
  let wrong = randomBytes(32).toString("base64url");
  if (wrong[0] === token[0]) wrong = other(token[0] ?? "") + wrong.slice(1);
  return [
    { id: "right", label: "right token (43 chars)", given: token, sameLengthWrong: false },
    { id: "wrong-no-prefix", label: "wrong, 43 chars, no common prefix", given: wrong, sameLengthWrong: true },
    { id: "wrong-prefix-42", label: "wrong, 43 chars, first 42 right", given: token.slice(0, 42) + other(token.at(-1) ?? ""), sameLengthWrong: true },
    { id: "wrong-1", label: "wrong, 1 char", given: other(token[0] ?? ""), sameLengthWrong: false },
    { id: "wrong-10000", label: "wrong, 10,000 chars (the token repeated)", given: token.repeat(233).slice(0, 10_000), sameLengthWrong: false },
  ];
}

/** ns per call of each case, one sample per batch of BATCH calls; rounds rotate the case order. */
function timeCompares(token: string, cases: readonly CompareCase[], rounds: number): { samples: number[][]; hits: number } {
  const samples = cases.map(() => [] as number[]);
  let hits = 0;
  for (let round = -1; round < rounds; round++) {
    for (let k = 0; k < cases.length; k++) {
      const index = (Math.max(0, round) + k) % cases.length;
      const given = (cases[index] as CompareCase).given;
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < BATCH; i++) if (secretsEqual(given, token)) hits += 1;
      const ns = Number(process.hrtime.bigint() - t0) / BATCH;
      if (round >= 0) samples[index]?.push(ns);
    }
  }
  return { samples, hits };
}

/** Max/min of the medians of the same-length wrong cases, over all rounds and over even vs odd rounds (noise). */
function ratios(cases: readonly CompareCase[], samples: readonly number[][]): { prefix: number; noise: number } {
  const wrong = cases.flatMap((c, i) => (c.sameLengthWrong ? [samples[i] ?? []] : []));
  const spread = (values: number[]): number => Math.max(...values) / Math.min(...values);
  const halves = wrong.map((s) => spread([median(s.filter((_v, i) => i % 2 === 0)), median(s.filter((_v, i) => i % 2 === 1))]));
  return { prefix: spread(wrong.map((s) => median(s))), noise: Math.max(...halves) };
}

function tokenCompare(ctx: SectionContext): void {
  const perCase = Math.max(BATCH, envInt("BENCH_COMPARES", 200_000));
  const rounds = Math.ceil(perCase / BATCH);
  const token = randomBytes(32).toString("base64url");
  const cases = compareCases(token);
  const t0 = performance.now();
  const { samples, hits } = timeCompares(token, cases, rounds);
  if (hits !== rounds * BATCH + BATCH) throw new Error(`secretsEqual matched ${hits} times, expected ${rounds * BATCH + BATCH}`);
  const { prefix, noise } = ratios(cases, samples);
  cases.forEach((c, i) => ctx.rows.push(statRow(`compare.${c.id}`, `${i === 0 ? "" : "  "}secretsEqual, ${c.label}`, stats(samples[i] ?? []), "ns")));
  ctx.rows.push(
    valueRow("compare.prefix-ratio", "  same-length wrong tokens, slower / faster median", prefix, "x", {
      note: `report only, expected ≈ 1.00 (SHA-256 digests are compared); even vs odd rounds of one case differ by up to ${format(noise, "x")}`,
    }),
  );
  ctx.log(`  token compare: ${rounds * BATCH} calls per case in ${((performance.now() - t0) / 1000).toFixed(1)} s; same-length wrong ratio ${format(prefix, "x")} (noise ${format(noise, "x")})`);
  ctx.details.compare = {
    tokenChars: token.length,
    perCase: rounds * BATCH,
    batch: BATCH,
    cases: cases.map((c, i) => ({ id: c.id, chars: c.given.length, ...stats(samples[i] ?? []) })),
    prefixRatio: prefix,
    noiseRatio: noise,
  };
}

export async function securitySection(ctx: SectionContext): Promise<void> {
  await preauthFlood(ctx);
  tokenCompare(ctx);
}
