/**
 * Measure 7: one long reply (1 MiB of text by default) streamed by a gateway child to a client:
 * the gateway's event-loop delay while it streams (perf_hooks.monitorEventLoopDelay inside the
 * gateway process, preloaded by `--import bench/lib/loop-lag.mjs`, and a second client's paced
 * `health` requests as the view from outside), the bytes the client's socket receives for the run
 * ÷ the reply's size, and send → final. Once with the echo runner (`/echo:bytes`), once with the
 * openai runner against a loopback mock model that streams the same text as SSE.
 */
import { createServer } from "node:http";
import type { AddressInfo, Socket } from "node:net";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { WebSocket } from "ws";
import { connectFrame } from "./lib/client.ts";
import type { SectionContext } from "./lib/context.ts";
import { type GatewayChild, type RunnerConfig, startGatewayChild } from "./lib/gateway-child.ts";
import { type Row, statRow, valueRow } from "./lib/report.ts";
import { envInt, sleep, stats, withTimeout } from "./lib/stats.ts";

export const STREAM_ENV = {
  BENCH_STREAM_BYTES: "bytes of the long reply (default 1048576)",
  BENCH_STREAM_CHUNK: "bytes per runner chunk: an echo delta, or the content of one SSE event of the mock model (default 256)",
  BENCH_STREAM_REPS: "measured replies per runner, after one warm-up reply (default 5)",
  BENCH_STREAM_PROBE_MS: "interval of the second client's health probes during a reply (default 5)",
  BENCH_STREAM_RUNNERS: "comma-separated runners to measure: echo, openai (default both)",
  BENCH_STREAM_CPU_PROF: "a directory: the section's gateways run with --cpu-prof and write their profiles there (default none)",
};

const LOOP_LAG = fileURLToPath(new URL("./lib/loop-lag.mjs", import.meta.url));
const LOOP_LINE = "ocgw-bench-loop ";
/** The echo runner's /echo:bytes text, so that the mock model streams the same bytes. */
const LINE = "lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do\n";

interface LoopLag {
  p50: number;
  p99: number;
  max: number;
  count: number;
}

/** Bytes a server-to-client WebSocket frame of `length` payload bytes takes on the wire (unmasked). */
function wireBytes(length: number): number {
  return length + (length < 126 ? 2 : length < 65_536 ? 4 : 10);
}

/** What one client received for one run, by kind of frame (WebSocket headers included). */
interface Received {
  chatDelta: number;
  chatDeltaFrames: number;
  agentAssistant: number;
  agentAssistantFrames: number;
  chatFinal: number;
  other: number;
  /** Concatenated deltaText length and final message length, to check the reply arrived whole. */
  deltaChars: number;
  finalChars: number;
}

interface RawClient {
  readonly socket: Socket;
  send(frame: unknown): void;
  onFrame(handler: (data: Buffer, at: number) => void): void;
  close(): Promise<void>;
}

/** A bare protocol client: handshake, then every frame as raw bytes (nothing parsed unless the caller does). */
async function connectRaw(url: string, token: string): Promise<RawClient> {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  let socket: Socket | undefined;
  ws.once("upgrade", (response) => (socket = response.socket as Socket));
  let handler: ((data: Buffer, at: number) => void) | undefined;
  const hello = new Promise<void>((resolve, reject) => {
    ws.on("message", (data: Buffer) => {
      const at = performance.now();
      if (handler !== undefined) {
        handler(data, at);
        return;
      }
      const frame = JSON.parse(data.toString("utf8")) as { type: string; event?: string; id?: string; ok?: boolean; error?: unknown };
      if (frame.event === "connect.challenge") {
        ws.send(connectFrame(token));
      } else if (frame.type === "res" && frame.id === "connect") {
        if (frame.ok === true) resolve();
        else reject(new Error(`connect refused: ${JSON.stringify(frame.error)}`));
      }
    });
    ws.once("error", reject);
    ws.once("close", (code) => reject(new Error(`socket closed during the handshake (${code})`)));
  });
  await withTimeout(hello, 10_000, `connect to ${url}`).catch((error: unknown) => {
    ws.terminate();
    throw error;
  });
  if (socket === undefined) throw new Error("no upgrade socket");
  const upgraded = socket;
  return {
    socket: upgraded,
    send: (frame) => ws.send(JSON.stringify(frame)),
    onFrame: (next) => void (handler = next),
    async close() {
      if (ws.readyState === WebSocket.CLOSED) return;
      const closed = new Promise<void>((resolve) => ws.once("close", () => resolve()));
      ws.close();
      await withTimeout(closed, 5_000, "client close").catch(() => ws.terminate());
    },
  };
}

/**
 * A loopback OpenAI-compatible model that streams `size` bytes of {@link LINE} text in SSE events
 * of `chunk` bytes of content each, written as fast as the socket takes them (it waits for
 * `drain`), then `finish_reason: "stop"` and `[DONE]`.
 */
async function startStreamingModel(size: number, chunk: number): Promise<{ baseUrl: string; close(): Promise<void> }> {
  const text = LINE.repeat(Math.ceil(size / LINE.length)).slice(0, size);
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      void (async () => {
        res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache" });
        const base = { id: "chatcmpl-bench", object: "chat.completion.chunk", created: 0, model: "bench-model" };
        for (let at = 0; at < size; at += chunk) {
          const event = `data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta: { content: text.slice(at, at + chunk) }, finish_reason: null }] })}\n\n`;
          if (!res.write(event)) await new Promise<void>((resolve) => res.once("drain", () => resolve()));
        }
        res.write(`data: ${JSON.stringify({ ...base, choices: [{ index: 0, delta: {}, finish_reason: "stop" }] })}\n\n`);
        res.end("data: [DONE]\n\n");
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}/v1`,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

interface RunSample {
  sendToFinalMs: number;
  /** bytesRead of the client's socket over the run. */
  socketBytes: number;
  received: Received;
  lag: LoopLag;
  probes: number[];
  probesLost: number;
}

async function measureRuns(
  gateway: GatewayChild,
  nextLoopLine: () => Promise<LoopLag>,
  label: string,
  message: (i: number) => string,
  options: { size: number; reps: number; probeMs: number; log: (line: string) => void },
): Promise<RunSample[]> {
  const client = await connectRaw(gateway.url, gateway.token);
  const prober = await connectRaw(gateway.url, gateway.token);
  const samples: RunSample[] = [];
  try {
    // The prober, like any second UI with operator.read, receives the stream too; only its
    // responses are read (by prefix, nothing else is parsed).
    const probeSent = new Map<string, number>();
    let probeTimes: number[] = [];
    const RES = Buffer.from('{"type":"res","id":"p');
    prober.onFrame((data, at) => {
      if (data.subarray(0, RES.length).equals(RES)) {
        const id = /"id":"(p\d+)"/.exec(data.subarray(0, 40).toString("latin1"))?.[1];
        const t0 = id === undefined ? undefined : probeSent.get(id);
        if (id !== undefined && t0 !== undefined) {
          probeSent.delete(id);
          probeTimes.push(at - t0);
        }
      }
    });
    let probeId = 0;
    const CHAT = Buffer.from('{"type":"event","event":"chat"');
    const AGENT = Buffer.from('{"type":"event","event":"agent"');
    for (let i = -1; i < options.reps; i++) {
      const runId = `${label}-${i < 0 ? "warm" : i}-${Date.now()}`;
      const received: Received = { chatDelta: 0, chatDeltaFrames: 0, agentAssistant: 0, agentAssistantFrames: 0, chatFinal: 0, other: 0, deltaChars: 0, finalChars: 0 };
      let onEnd!: (value: { state: string; at: number }) => void;
      const ended = new Promise<{ state: string; at: number }>((resolve) => (onEnd = resolve));
      client.onFrame((data, at) => {
        const bytes = wireBytes(data.length);
        if (data.subarray(0, CHAT.length).equals(CHAT)) {
          const frame = JSON.parse(data.toString("utf8")) as { payload: { runId: string; state: string; deltaText?: string; message?: { content: { text: string }[] } } };
          if (frame.payload.runId === runId && frame.payload.state === "delta") {
            received.chatDelta += bytes;
            received.chatDeltaFrames += 1;
            received.deltaChars += frame.payload.deltaText?.length ?? 0;
            return;
          }
          if (frame.payload.runId === runId && (frame.payload.state === "final" || frame.payload.state === "error" || frame.payload.state === "aborted")) {
            received.chatFinal += bytes;
            received.finalChars = frame.payload.message?.content.reduce((sum, block) => sum + block.text.length, 0) ?? 0;
            onEnd({ state: frame.payload.state, at });
            return;
          }
        } else if (data.subarray(0, AGENT.length).equals(AGENT) && data.subarray(0, 200).includes('"stream":"assistant"')) {
          received.agentAssistant += bytes;
          received.agentAssistantFrames += 1;
          return;
        }
        received.other += bytes;
      });
      await nextLoopLine(); // resets the gateway's histogram
      probeTimes = [];
      probeSent.clear();
      const before = client.socket.bytesRead;
      const t0 = performance.now();
      client.send({ type: "req", id: `send-${runId}`, method: "chat.send", params: { sessionKey: runId, message: message(i), idempotencyKey: runId } });
      const probe = setInterval(() => {
        const id = `p${++probeId}`;
        probeSent.set(id, performance.now());
        prober.send({ type: "req", id, method: "health", params: {} });
      }, options.probeMs);
      let end: { state: string; at: number };
      try {
        end = await withTimeout(ended, 120_000, `${label}: the reply's final event`);
      } finally {
        clearInterval(probe);
      }
      const socketBytes = client.socket.bytesRead - before;
      const lag = await nextLoopLine();
      // The probes still in flight when the reply ended, bounded.
      for (let waited = 0; probeSent.size > 0 && waited < 2_000; waited += 10) await sleep(10);
      const probesLost = probeSent.size;
      if (end.state !== "final") throw new Error(`${label}: the reply ended ${end.state}`);
      if (received.deltaChars !== options.size || received.finalChars !== options.size) {
        throw new Error(`${label}: the reply arrived incomplete (deltas ${received.deltaChars}, final ${received.finalChars}, expected ${options.size} characters)`);
      }
      if (i < 0) continue;
      samples.push({ sendToFinalMs: end.at - t0, socketBytes, received, lag, probes: probeTimes, probesLost });
      options.log(
        `  ${label} #${i + 1}: send → final ${(end.at - t0).toFixed(0)} ms, ${(socketBytes / options.size).toFixed(2)}× on the wire, loop delay p99 ${lag.p99.toFixed(1)} ms (max ${lag.max.toFixed(1)}), ${probeTimes.length} probes`,
      );
    }
  } finally {
    await client.close();
    await prober.close();
  }
  return samples;
}

function rowsFor(label: string, samples: readonly RunSample[], size: number, reps: number): Row[] {
  // One copy of the reply inside a JSON frame ("\n" is escaped to 2 bytes).
  const escaped = JSON.stringify(LINE.repeat(Math.ceil(size / LINE.length)).slice(0, size)).length - 2;
  const mib = size === 1024 * 1024 ? "1 MB" : `${(size / 1024).toFixed(0)} KiB`;
  const median = (values: number[]): number => stats(values).p50;
  const ratio = (pick: (s: RunSample) => number): number => median(samples.map(pick)) / size;
  const frames = (pick: (s: RunSample) => number): number => median(samples.map(pick));
  const lagP99 = Math.max(...samples.map((s) => s.lag.p99));
  const lagMax = Math.max(...samples.map((s) => s.lag.max));
  const probes = samples.flatMap((s) => s.probes);
  const lost = samples.reduce((sum, s) => sum + s.probesLost, 0);
  return [
    {
      ...statRow(`stream.${label}.loop`, `[${label}] ${mib} reply: event-loop delay in the gateway while it streams`, { ...stats([]), p50: median(samples.map((s) => s.lag.p50)), p95: Number.NaN, p99: lagP99, n: samples.length }, "ms", {
        target: { on: "p99", max: 20, text: "p99 ≤ 20 ms" },
        note: `monitorEventLoopDelay (1 ms resolution) in the gateway process, from chat.send to the final event; p50 the median of the ${reps} replies' p50, p99 the worst of their p99s; max ${lagMax.toFixed(1)} ms`,
      }),
    },
    statRow(`stream.${label}.probe`, `  health from a second client meanwhile, every ${envInt("BENCH_STREAM_PROBE_MS", 5)} ms`, stats(probes), "ms", {
      note: `each timed from its own write, not waiting for the previous one (${probes.length} probes${lost > 0 ? `, ${lost} unanswered after 2 s` : ""}); that client receives the stream too`,
    }),
    statRow(`stream.${label}.final`, `  send → final`, stats(samples.map((s) => s.sendToFinalMs)), "ms"),
    valueRow(`stream.${label}.wire`, `  bytes the client's socket received ÷ reply size`, ratio((s) => s.socketBytes), "x", {
      target: { on: "value", max: 3, text: "≤ 3×" },
      note: "socket bytesRead from just before chat.send to the final event (ack, every event, WebSocket headers), median of the replies",
    }),
    valueRow(`stream.${label}.wire.chat`, `    chat delta frames`, ratio((s) => s.received.chatDelta), "x", { display: `${ratio((s) => s.received.chatDelta).toFixed(2)}× in ${frames((s) => s.received.chatDeltaFrames)} frames` }),
    valueRow(`stream.${label}.wire.agent`, `    agent assistant frames`, ratio((s) => s.received.agentAssistant), "x", { display: `${ratio((s) => s.received.agentAssistant).toFixed(2)}× in ${frames((s) => s.received.agentAssistantFrames)} frames` }),
    valueRow(`stream.${label}.wire.final`, `    chat final frame (the whole reply)`, ratio((s) => s.received.chatFinal), "x"),
    valueRow(`stream.${label}.wire.floor`, `    floor: the reply once per stream (chat deltas, agent deltas, final), JSON-escaped`, (3 * escaped) / size, "x", {
      note: "every read-scoped client gets both the chat and the agent events of a run (protocol §6.1), and the final chat event carries the whole message",
    }),
    valueRow(`stream.${label}.wire.other`, `    everything else (ack, lifecycle events)`, ratio((s) => s.socketBytes - s.received.chatDelta - s.received.agentAssistant - s.received.chatFinal), "x"),
  ];
}

export async function streamSection(ctx: SectionContext): Promise<void> {
  const size = envInt("BENCH_STREAM_BYTES", 1024 * 1024);
  const chunk = Math.max(1, envInt("BENCH_STREAM_CHUNK", 256));
  const reps = Math.max(1, envInt("BENCH_STREAM_REPS", 5));
  const probeMs = Math.max(1, envInt("BENCH_STREAM_PROBE_MS", 5));
  const profileDir = process.env.BENCH_STREAM_CPU_PROF === undefined || process.env.BENCH_STREAM_CPU_PROF === "" ? undefined : path.resolve(process.env.BENCH_STREAM_CPU_PROF);
  const runners: { label: string; runner: RunnerConfig | undefined; message: (i: number) => string; model?: Awaited<ReturnType<typeof startStreamingModel>> }[] = [
    { label: "echo", runner: undefined, message: () => `/echo:bytes ${size} ${chunk}` },
  ];
  const model = await startStreamingModel(size, chunk);
  runners.push({ label: "openai", runner: { kind: "openai", openai: { baseUrl: model.baseUrl, model: "bench-model" } }, message: (i) => `a long reply please (${i})`, model });
  const only = (process.env.BENCH_STREAM_RUNNERS ?? "").split(",").map((name) => name.trim()).filter((name) => name !== "");
  for (const name of only) if (!runners.some((r) => r.label === name)) throw new Error(`BENCH_STREAM_RUNNERS: unknown runner "${name}"`);
  try {
    for (const { label, runner, message } of runners.filter((r) => only.length === 0 || only.includes(r.label))) {
      const waiters: ((lag: LoopLag) => void)[] = [];
      const gateway = await startGatewayChild({
        dir: path.join(ctx.dir, label),
        implicit: "ephemeral",
        idleTtlMs: 0,
        ...(runner === undefined ? {} : { runner }),
        nodeArgs: ["--import", LOOP_LAG, ...(profileDir === undefined ? [] : ["--cpu-prof", `--cpu-prof-dir=${profileDir}`, `--cpu-prof-name=gateway-${label}.cpuprofile`])],
        onStderrLine: (line) => {
          if (line.startsWith(LOOP_LINE)) waiters.shift()?.(JSON.parse(line.slice(LOOP_LINE.length)) as LoopLag);
        },
      });
      const nextLoopLine = (): Promise<LoopLag> => {
        const line = new Promise<LoopLag>((resolve) => waiters.push(resolve));
        process.kill(gateway.pid, "SIGUSR2");
        return withTimeout(line, 10_000, "the gateway's event-loop delay line");
      };
      try {
        const samples = await measureRuns(gateway, nextLoopLine, label, message, { size, reps, probeMs, log: ctx.log });
        ctx.rows.push(...rowsFor(label, samples, size, reps));
        ctx.details[label] = samples.map((s) => ({ sendToFinalMs: s.sendToFinalMs, socketBytes: s.socketBytes, received: s.received, lag: s.lag, probes: stats(s.probes), probesLost: s.probesLost }));
      } finally {
        await gateway.stop();
      }
    }
    Object.assign(ctx.details, { size, chunk, reps, probeMs });
  } finally {
    await model.close();
  }
}
