/**
 * The real OpenClaw gateway (the pinned `openclaw@2026.9.6`, installed as the real-OpenClaw suite
 * installs it) as a bench child: started in an isolated directory inside the bench root (HOME,
 * TMPDIR, state dir, log file), loopback bind, token auth, its model the bench's loopback mock,
 * the same way the suite's harness starts it (packages/gateway/test/openclaw/openclaw-process.ts).
 * Killed by PID; the lock files OpenClaw leaves in /tmp/openclaw-state-locks-<uid>/ for this
 * directory are removed when it stops.
 */
import { randomBytes } from "node:crypto";
import { readdir, readFile, realpath, writeFile } from "node:fs/promises";
import setupOpenClaw from "../../packages/gateway/test/openclaw/install.ts";
import { OPENCLAW_BIN, OPENCLAW_READY_LINE, freePort, openClawConfig, openClawLayout, removeLifecycleLocks } from "../../packages/gateway/test/openclaw/openclaw-process.ts";
import { type BenchClient, connectClient } from "./client.ts";
import { type Spawned, readRss, signalChild, spawnNode } from "./processes.ts";
import { sleep, withTimeout } from "./stats.ts";

export { OPENCLAW_VERSION } from "../../packages/gateway/test/openclaw/install.ts";

export interface OpenClawChild {
  readonly pid: number;
  readonly url: string;
  readonly token: string;
  readonly process: Spawned;
  /** performance.now() at spawn, at the ready line, and when the first client got hello-ok. */
  readonly spawnedAt: number;
  readonly readyAt: number;
  readonly connectedAt: number;
  /** VmRSS (KiB) of the gateway process and of its whole process tree. */
  rss(): Promise<{ rssKb: number; treeKb: number }>;
  /** SIGTERM by PID, up to `timeoutMs`, then SIGKILL (it and any process of its tree still there); then its lock files go. */
  stop(timeoutMs?: number): Promise<{ forced: boolean; ms: number }>;
}

/** Installs openclaw@2026.9.6 into node_modules/.cache/ocgw-openclaw/ if it is not there (the suite's global setup). */
export const ensureOpenClaw = setupOpenClaw;

/** The PIDs below `pid` (children, grandchildren …), from /proc/<n>/stat. */
export async function descendants(pid: number): Promise<number[]> {
  const parentOf = new Map<number, number>();
  for (const name of await readdir("/proc")) {
    if (!/^\d+$/.test(name)) continue;
    const stat = await readFile(`/proc/${name}/stat`, "utf8").catch(() => "");
    // Field 4 (ppid) follows the command name in parentheses, which may itself hold spaces.
    const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
    if (Number.isInteger(ppid)) parentOf.set(Number(name), ppid);
  }
  const found: number[] = [];
  let frontier = [pid];
  for (let depth = 0; depth < 32 && frontier.length > 0; depth++) {
    const next = [...parentOf].filter(([, ppid]) => frontier.includes(ppid)).map(([child]) => child);
    found.push(...next);
    frontier = next;
  }
  return found;
}

/** The command lines of the processes below `pid` (at most 160 characters each). */
export async function treeCommands(pid: number): Promise<string[]> {
  const lines: string[] = [];
  for (const child of await descendants(pid)) {
    const cmdline = await readFile(`/proc/${child}/cmdline`, "utf8").catch(() => "");
    lines.push(cmdline.replaceAll("\0", " ").trim().slice(0, 160));
  }
  return lines;
}

async function treeRss(pid: number): Promise<{ rssKb: number; treeKb: number }> {
  const own = (await readRss(pid)).rssKb;
  let treeKb = own;
  for (const child of await descendants(pid)) treeKb += (await readRss(child).catch(() => ({ rssKb: 0 }))).rssKb || 0;
  return { rssKb: own, treeKb };
}

/** Connects the bench client once OpenClaw has printed its ready line (it may still refuse for a moment), retrying until `deadline`. */
async function connectWhenReady(url: string, token: string, ready: Promise<number>, deadline: number): Promise<BenchClient> {
  await ready;
  for (let attempt = 0; performance.now() < deadline; attempt++) {
    try {
      return await connectClient(url, token, 30_000);
    } catch (error) {
      if (performance.now() + 500 >= deadline) throw error;
      await sleep(Math.min(2_000, 250 * (attempt + 1)));
    }
  }
  throw new Error(`openclaw at ${url}: no hello-ok before the deadline`);
}

export interface OpenClawChildOptions {
  /** A directory of its own inside the bench root (home/, tmp/, state/, openclaw.log go here). */
  dir: string;
  /** The mock model's `http://127.0.0.1:<port>/v1`. */
  modelBaseUrl: string;
  /** Spawn → connected client, default 180 s (a loaded 2-core machine). */
  readyTimeoutMs?: number;
}

/** Starts `openclaw gateway run` and resolves with it and a connected bench client. */
export async function startOpenClawChild(options: OpenClawChildOptions): Promise<{ gateway: OpenClawChild; client: BenchClient }> {
  const root = await realpath(options.dir);
  const oc = await openClawLayout(root);
  const port = await freePort();
  const token = randomBytes(24).toString("hex");
  await writeFile(oc.configPath, `${JSON.stringify(openClawConfig(oc, port, token, options.modelBaseUrl, {}), null, 2)}\n`);
  let onReady!: (at: number) => void;
  const ready = new Promise<number>((resolve) => (onReady = resolve));
  const onLine = (line: string, at: number): void => void (OPENCLAW_READY_LINE.test(line) && onReady(at));
  const spawnedAt = performance.now();
  const child = spawnNode([OPENCLAW_BIN, "gateway", "run"], { env: oc.env, cwd: root, onStdoutLine: onLine, onStderrLine: onLine });
  const url = `ws://127.0.0.1:${port}`;
  const deadline = spawnedAt + (options.readyTimeoutMs ?? 180_000);
  const stop = stopper(child, root);
  try {
    const died = child.exited.then(({ code, signal }) => Promise.reject(new Error(`openclaw exited during start (code ${code}, signal ${signal}):\n${child.stderrTail().join("\n")}`)));
    const client = await withTimeout(Promise.race([connectWhenReady(url, token, ready, deadline), died]), deadline - spawnedAt + 1_000, "openclaw start");
    const gateway: OpenClawChild = { pid: child.pid, url, token, process: child, spawnedAt, readyAt: await ready, connectedAt: performance.now(), rss: () => treeRss(child.pid), stop };
    return { gateway, client };
  } catch (error) {
    await stop(5_000);
    throw error;
  }
}

function stopper(child: Spawned, root: string): OpenClawChild["stop"] {
  return async (timeoutMs = 60_000) => {
    const t0 = performance.now();
    const tree = await descendants(child.pid).catch(() => [] as number[]);
    signalChild(child.child, "SIGTERM");
    let forced = false;
    await withTimeout(child.exited, timeoutMs, "openclaw stop").catch(async () => {
      forced = true;
      signalChild(child.child, "SIGKILL");
      await child.exited;
    });
    // Processes OpenClaw started and left behind (it had none in our runs): by PID, the ones seen under it before the stop.
    for (const pid of tree) {
      try {
        process.kill(pid, "SIGKILL");
        forced = true;
      } catch {
        // Gone with it.
      }
    }
    await removeLifecycleLocks(root);
    return { forced, ms: performance.now() - t0 };
  };
}
