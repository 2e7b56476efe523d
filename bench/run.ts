/**
 * `npm run bench`: a report, never a verdict. Prints one table and writes the same numbers to
 * bench/results/latest.json. Every ratio compares numbers measured in this same run, on this
 * machine; targets are shown beside the medians, nothing fails on them.
 */
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { cpus, tmpdir, totalmem } from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { WebSocket } from "ws";
import { BOOTSTRAP_FILES, MARKER_NAME, createEphemeralProvider } from "../packages/workspace/src/index.ts";
import { startGateway } from "../packages/gateway/src/index.ts";

const PACED = Number(process.env.BENCH_PACED ?? 300);
const BURST = Number(process.env.BENCH_BURST ?? 200);
const PROVISION = Number(process.env.BENCH_PROVISION ?? 1000);

function quantile(values: number[], q: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1));
  return sorted[index] as number;
}
const stats = (values: number[]) => ({ p50: quantile(values, 0.5), p95: quantile(values, 0.95), p99: quantile(values, 0.99), n: values.length });
const ms = (value: number): string => `${value.toFixed(3)} ms`;

interface Client {
  send(method: string, params: unknown): Promise<{ ok: boolean; payload: unknown }>;
  onFinal(runId: string): Promise<void>;
  close(): void;
}

async function connect(url: string, token: string): Promise<Client> {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  const pending = new Map<string, (frame: { ok: boolean; payload: unknown }) => void>();
  const finals = new Map<string, () => void>();
  const done = new Set<string>();
  let id = 0;
  ws.on("message", (data) => {
    const frame = JSON.parse(String(data)) as { type: string; id?: string; event?: string; ok: boolean; payload: { runId?: string; state?: string } };
    if (frame.type === "res" && frame.id !== undefined) {
      pending.get(frame.id)?.(frame);
      pending.delete(frame.id);
    } else if (frame.type === "event" && frame.event === "chat" && frame.payload.state !== "delta" && frame.payload.runId !== undefined) {
      const resolve = finals.get(frame.payload.runId);
      if (resolve === undefined) done.add(frame.payload.runId);
      else resolve();
    }
  });
  await new Promise<void>((resolve, reject) => {
    ws.once("error", reject);
    ws.on("message", function first(data) {
      const frame = JSON.parse(String(data)) as { event?: string };
      if (frame.event !== "connect.challenge") return;
      ws.off("message", first);
      ws.send(JSON.stringify({ type: "req", id: "connect", method: "connect", params: { minProtocol: 4, maxProtocol: 4, client: { id: "cli", mode: "cli", version: "bench", platform: process.platform }, auth: { token }, scopes: ["operator.admin"] } }));
      pending.set("connect", (res) => (res.ok ? resolve() : reject(new Error(JSON.stringify(res)))));
    });
  });
  return {
    send(method, params) {
      const reqId = `b${++id}`;
      return new Promise((resolve) => {
        pending.set(reqId, resolve);
        ws.send(JSON.stringify({ type: "req", id: reqId, method, params }));
      });
    },
    onFinal(runId) {
      if (done.delete(runId)) return Promise.resolve();
      return new Promise((resolve) => finals.set(runId, () => { finals.delete(runId); resolve(); }));
    },
    close: () => ws.close(),
  };
}

type Stats = ReturnType<typeof stats>;

async function gatewayLatency(base: string): Promise<{ pacedAck: Stats; sendToFinal: Stats; burstAck: Stats }> {
  const token = "bench-token";
  const gateway = await startGateway({
    stateDir: path.join(base, "state"),
    gateway: { port: 0, auth: { token } },
    workspace: { implicit: "ephemeral", ephemeral: { root: path.join(base, "root"), idleTtlMs: 0 }, gc: { onStartup: false, intervalMs: 0 } },
  });
  const client = await connect(gateway.url, token);
  try {
    // Warm-up: JIT, SQLite page cache, first directory in the root.
    for (let i = 0; i < 50; i++) {
      const runId = `warm-${i}`;
      const final = client.onFinal(runId);
      await client.send("chat.send", { sessionKey: `warm-${i}`, message: "hello", idempotencyKey: runId });
      await final;
    }
    const pacedAck: number[] = [];
    const sendToFinal: number[] = [];
    for (let i = 0; i < PACED; i++) {
      const runId = `paced-${i}`;
      const final = client.onFinal(runId);
      const t0 = performance.now();
      await client.send("chat.send", { sessionKey: `paced-${i}`, message: "hello there", idempotencyKey: runId });
      pacedAck.push(performance.now() - t0);
      await final;
      sendToFinal.push(performance.now() - t0);
      await new Promise((resolve) => setTimeout(resolve, 2));
    }
    const burstAck: number[] = [];
    const finals: Promise<void>[] = [];
    const acks: Promise<void>[] = [];
    for (let i = 0; i < BURST; i++) {
      const runId = `burst-${i}`;
      finals.push(client.onFinal(runId));
      const t0 = performance.now();
      acks.push(client.send("chat.send", { sessionKey: `burst-${i}`, message: "hello there", idempotencyKey: runId }).then(() => void burstAck.push(performance.now() - t0)));
    }
    await Promise.all([...acks, ...finals]);
    return { pacedAck: stats(pacedAck), sendToFinal: stats(sendToFinal), burstAck: stats(burstAck) };
  } finally {
    client.close();
    await gateway.close();
  }
}

async function provisioning(base: string): Promise<{ provider: Stats; floor: Stats }> {
  const root = path.join(base, "provision-root");
  const provider = await createEphemeralProvider({ root });
  const floorRoot = path.join(base, "floor-root");
  await mkdir(floorRoot, { mode: 0o700 });
  const marker = JSON.stringify({ v: 1, tool: "ocgw", leaseId: "00000000-0000-4000-8000-000000000000", instanceId: "bench-instance", name: "x", key: "k", agentId: "main", createdAt: 0, dev: "0", ino: "0", pid: 1, host: "h" });
  const providerTimes: number[] = [];
  const floorTimes: number[] = [];
  try {
    // Interleaved, so both see the same machine state.
    for (let i = 0; i < PROVISION; i++) {
      let t0 = performance.now();
      const lease = await provider.acquire({ key: `agent:main:bench-${i}` });
      await provider.release(lease, "run-end");
      providerTimes.push(performance.now() - t0);

      t0 = performance.now();
      const dir = await mkdtemp(path.join(floorRoot, "ws-"));
      await writeFile(path.join(dir, MARKER_NAME), marker, { flag: "wx", mode: 0o600 });
      for (const [name, content] of Object.entries(BOOTSTRAP_FILES)) await writeFile(path.join(dir, name), content, { flag: "wx" });
      await rm(dir, { recursive: true, force: true });
      floorTimes.push(performance.now() - t0);
    }
  } finally {
    await provider.close();
  }
  return { provider: stats(providerTimes), floor: stats(floorTimes) };
}

const base = await mkdtemp(path.join(tmpdir(), "ocgw-bench-"));
try {
  const latency = await gatewayLatency(base);
  const provision = await provisioning(base);
  const ratio = provision.provider.p50 / provision.floor.p50;
  const row = (name: string, s: Stats, target: string): string[] => [name, ms(s.p50), ms(s.p95), ms(s.p99), target];
  const rows: string[][] = [
    row("chat.send ack, paced", latency.pacedAck, "p99 ≤ 5 ms"),
    row(`chat.send ack, ${BURST}-send burst`, latency.burstAck, "p99 ≤ 50 ms"),
    row("send → final (echo)", latency.sendToFinal, "p50 ≤ 5 ms"),
    row("ephemeral acquire+release", provision.provider, "≤ 2× floor"),
    row("raw-fs floor (mkdtemp+writes+rm)", provision.floor, ""),
  ];
  console.log(`\nocgw bench — node ${process.version}, ${cpus().length} × ${cpus()[0]?.model ?? "cpu"}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, ${process.platform}`);
  console.log(`(paced n=${PACED}, burst n=${BURST}, provisioning n=${PROVISION}; medians and tails of one run)\n`);
  const header = ["measure", "p50", "p95", "p99", "target"];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((cells) => (cells[i] ?? "").length)));
  const line = (cells: string[]) => cells.map((cell, i) => cell.padEnd(widths[i] ?? 0)).join("  ");
  console.log(line(header));
  console.log(widths.map((w) => "-".repeat(w)).join("  "));
  for (const cells of rows) console.log(line(cells));
  console.log(`\nacquire+release / floor (medians): ${ratio.toFixed(2)}×`);
  const results = { when: new Date().toISOString(), node: process.version, cpus: cpus().length, latency, provision, provisionRatio: ratio };
  const out = fileURLToPath(new URL("./results/latest.json", import.meta.url));
  await mkdir(path.dirname(out), { recursive: true });
  await writeFile(out, JSON.stringify(results, null, 2));
  console.log(`written: ${path.relative(process.cwd(), out)}`);
} finally {
  await rm(base, { recursive: true, force: true });
}
