/**
 * Measure 2, per `workspace.implicit` mode: the cost of one implicit session through a gateway
 * child (send → final p50), the disk it leaves behind once its run is over and the gateway has
 * stopped, and the matching provider's acquire+release beside the raw-fs floor, interleaved in
 * this process so both see the same machine state.
 */
import { mkdir, mkdtemp, rm, stat, writeFile } from "node:fs/promises";
import * as path from "node:path";
import {
  BOOTSTRAP_FILES,
  MARKER_NAME,
  type WorkspaceProvider,
  createEphemeralProvider,
  createNoneProvider,
  createPersistentProvider,
} from "../packages/workspace/src/index.ts";
import { type BenchClient, chatSend, connectClient } from "./lib/client.ts";
import type { SectionContext } from "./lib/context.ts";
import { diskUsage, rootEntries, type Usage } from "./lib/fs-usage.ts";
import { type GatewayChild, type ImplicitMode, startGatewayChild } from "./lib/gateway-child.ts";
import { format, statRow, valueRow } from "./lib/report.ts";
import { envInt, sleep, stats } from "./lib/stats.ts";

export const MODES_ENV = {
  BENCH_MODE_SESSIONS: "implicit sessions per mode through a gateway child (default 300; 20 more warm it up)",
  BENCH_PROVISION: "provider acquire+release iterations per mode, each paired with one floor iteration (default 1000)",
};

const MODES: readonly ImplicitMode[] = ["ephemeral", "agent", "persistent", "none"];
const WARMUP = 20;

interface ModeResult {
  mode: ImplicitMode;
  sessions: number;
  sendToFinal: ReturnType<typeof stats>;
  usage: Usage;
  perSession: { bytes: number; allocated: number; files: number; dirs: number };
  leftInRoot: Awaited<ReturnType<typeof rootEntries>>;
}

/**
 * One gateway child per mode, all running at once, and the sessions sent round-robin (one to each
 * mode in turn, each awaited to its final), so every mode sees the same machine state.
 */
async function runModes(ctx: SectionContext, sessions: number, baseline: Usage): Promise<ModeResult[]> {
  const gateways: GatewayChild[] = [];
  const clients: BenchClient[] = [];
  const times = new Map<ImplicitMode, number[]>(MODES.map((mode) => [mode, []]));
  try {
    for (const mode of MODES) gateways.push(await startGatewayChild({ dir: path.join(ctx.dir, `gateway-${mode}`), implicit: mode, idleTtlMs: 0 }));
    for (const gateway of gateways) clients.push(await connectClient(gateway.url, gateway.token));
    for (let i = 0; i < WARMUP + sessions; i++) {
      for (const [index, mode] of MODES.entries()) {
        const sent = await chatSend(clients[index] as BenchClient, { sessionKey: `${mode}-${i}`, message: "hello there", idempotencyKey: `${mode}-${i}` });
        if (!sent.ack.ok) throw new Error(`chat.send refused in mode ${mode}: ${JSON.stringify(sent.ack.error)}`);
        const end = await sent.end;
        if (i >= WARMUP && end.state === "final") times.get(mode)?.push(end.at - sent.t0);
        await sleep(1);
      }
    }
  } finally {
    for (const client of clients) await client.close();
    for (const gateway of gateways) await gateway.stop();
  }
  const total = WARMUP + sessions;
  const per = (a: number, b: number): number => Math.max(0, a - b) / total;
  const results: ModeResult[] = [];
  for (const [index, mode] of MODES.entries()) {
    const gateway = gateways[index] as GatewayChild;
    // After a graceful stop: the database is checkpointed, the instance record gone.
    const usage = await diskUsage([gateway.stateDir, gateway.root]);
    results.push({
      mode,
      sessions: total,
      sendToFinal: stats(times.get(mode) ?? []),
      usage,
      perSession: {
        bytes: per(usage.bytes, baseline.bytes),
        allocated: per(usage.allocated, baseline.allocated),
        files: per(usage.files, baseline.files),
        dirs: per(usage.dirs, baseline.dirs),
      },
      leftInRoot: await rootEntries(gateway.root),
    });
  }
  return results;
}

/** A gateway started and stopped with no session: what every state dir + root holds anyway. */
async function baselineUsage(ctx: SectionContext): Promise<Usage> {
  const gateway = await startGatewayChild({ dir: path.join(ctx.dir, "gateway-baseline"), implicit: "ephemeral", idleTtlMs: 0 });
  await gateway.stop();
  return diskUsage([gateway.stateDir, gateway.root]);
}

const FLOOR_MARKER = JSON.stringify({
  v: 1,
  tool: "ocgw",
  leaseId: "00000000-0000-4000-8000-000000000000",
  instanceId: "00000000-0000-4000-8000-000000000000",
  name: "agent-main-bench-0-000000000000-000000000000",
  key: "agent:main:bench-0",
  agentId: "main",
  createdAt: 0,
  dev: "0",
  ino: "0",
});

async function writeBootstrap(dir: string): Promise<void> {
  for (const [name, content] of Object.entries(BOOTSTRAP_FILES)) await writeFile(path.join(dir, name), content, { flag: "wx", mode: 0o644 });
}

interface ProvisionResult {
  provider: ReturnType<typeof stats>;
  floor: ReturnType<typeof stats> | null;
  floorWhat: string;
}

/**
 * The provider's acquire+release against the same file-system effects done raw, interleaved:
 * - ephemeral: mkdtemp + marker + bootstrap files + rm -r;
 * - persistent (session layout): mkdir + bootstrap files, kept by both sides until the end, as the
 *   mode keeps them;
 * - agent: the workspace exists after the first acquire, so the floor is one stat of it;
 * - none: no file-system work at all, so no floor.
 */
/** The file-system work of one ephemeral session done raw: mkdtemp + marker + bootstrap files + rm -r. */
export async function ephemeralFloor(root: string): Promise<void> {
  const ws = await mkdtemp(path.join(root, "ws-"));
  await writeFile(path.join(ws, MARKER_NAME), FLOOR_MARKER, { flag: "wx", mode: 0o600 });
  await writeBootstrap(ws);
  await rm(ws, { recursive: true, force: true });
}

async function provision(base: string, mode: ImplicitMode, iterations: number): Promise<ProvisionResult> {
  const dir = await mkdtemp(path.join(base, `provision-${mode}-`));
  const floorRoot = path.join(dir, "floor");
  await mkdir(floorRoot, { mode: 0o700 });
  const providerTimes: number[] = [];
  const floorTimes: number[] = [];
  let provider: WorkspaceProvider;
  let floorWhat: string;
  let floor: ((i: number) => Promise<void>) | undefined;
  if (mode === "ephemeral") {
    provider = await createEphemeralProvider({ root: path.join(dir, "root") });
    floorWhat = "mkdtemp + marker + bootstrap files + rm -r";
    floor = () => ephemeralFloor(floorRoot);
  } else if (mode === "persistent") {
    const stateDir = path.join(dir, "state");
    await mkdir(stateDir);
    provider = createPersistentProvider({ stateDir, layout: "session" });
    // Both sides keep what they create, as the mode does (new inodes every time, never reused).
    floorWhat = "mkdir + bootstrap files";
    floor = async (i) => {
      const ws = path.join(floorRoot, `workspace-${i}`);
      await mkdir(ws, { mode: 0o755 });
      await writeBootstrap(ws);
    };
  } else if (mode === "agent") {
    const stateDir = path.join(dir, "state");
    await mkdir(stateDir);
    provider = createPersistentProvider({ stateDir, layout: "agent" });
    // The first acquire creates and seeds the agent's workspace; every later one adopts it.
    const first = await provider.acquire({ key: "agent:main:first" });
    await provider.release(first, "run-end");
    const agentDir = first.path as string;
    floorWhat = "stat of the existing agent workspace";
    floor = async () => {
      await stat(agentDir);
    };
  } else {
    provider = createNoneProvider();
    floorWhat = "no file-system work";
  }
  try {
    for (let i = 0; i < iterations; i++) {
      let t0 = performance.now();
      const lease = await provider.acquire({ key: `agent:main:bench-${i}` });
      await provider.release(lease, "run-end");
      providerTimes.push(performance.now() - t0);
      if (floor !== undefined) {
        t0 = performance.now();
        await floor(i);
        floorTimes.push(performance.now() - t0);
      }
    }
  } finally {
    await provider.close();
    await rm(dir, { recursive: true, force: true });
  }
  return { provider: stats(providerTimes), floor: floor === undefined ? null : stats(floorTimes), floorWhat };
}

export async function modesSection(ctx: SectionContext): Promise<void> {
  const sessions = envInt("BENCH_MODE_SESSIONS", 300);
  const iterations = envInt("BENCH_PROVISION", 1000);
  const baseline = await baselineUsage(ctx);
  ctx.log(`  baseline (empty gateway, stopped): ${baseline.bytes} B in ${baseline.files} files`);
  ctx.log(`  ${WARMUP + sessions} sessions per mode through 4 gateway children, round-robin`);
  const results = await runModes(ctx, sessions, baseline);
  for (const result of results) {
    const { mode, perSession: per } = result;
    ctx.rows.push(
      statRow(`mode.${mode}.final`, `[${mode}] send → final`, result.sendToFinal, "ms", mode === "ephemeral" ? { upstream: "p50 184, p99 349 ms" } : {}),
      valueRow(`mode.${mode}.disk`, `[${mode}] disk left per session`, per.bytes, "B", {
        display: `${format(per.bytes, "B")} (${format(per.allocated, "B")} alloc), ${per.files.toFixed(2)} files, ${per.dirs.toFixed(2)} dirs`,
        upstream: mode === "ephemeral" ? "~16 KB (+325 KB, 44 files w/ sandbox)" : undefined,
      }),
    );
  }
  const provisions: Record<string, ProvisionResult> = {};
  for (const mode of MODES) {
    ctx.log(`  mode ${mode}: provider vs floor, ${iterations} interleaved iterations`);
    const prov = await provision(ctx.dir, mode, iterations);
    provisions[mode] = prov;
    const ratio = prov.floor === null ? Number.NaN : prov.provider.p50 / prov.floor.p50;
    ctx.rows.push(statRow(`mode.${mode}.provider`, `[${mode}] provider acquire+release`, prov.provider, "ms"));
    if (prov.floor !== null) {
      ctx.rows.push(
        statRow(`mode.${mode}.floor`, `[${mode}] raw-fs floor`, prov.floor, "ms", { note: prov.floorWhat }),
        valueRow(`mode.${mode}.ratio`, `[${mode}] provider / floor (p50)`, ratio, "x", mode === "ephemeral" ? { target: { on: "value", max: 2, text: "≤ 2× floor" } } : {}),
      );
    }
  }
  Object.assign(ctx.details, { sessionsPerMode: WARMUP + sessions, baseline, results, provisions });
}
