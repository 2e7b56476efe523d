/**
 * A gateway in its own process, started exactly as an operator starts it:
 * `node packages/cli/dist/bin.js gateway run --port 0 --state-dir … --config …` (the built bin,
 * what an installed `ocgw` runs; `npm run bench` builds first), its ready line read from stdout.
 * Everything it writes stays under the directory it is given (state dir, ephemeral root, config
 * file, and HOME/TMPDIR pointed inside it too), except Node's compile cache, which is shared by
 * all children of one bench run and also lives in its root (the CLI's own default,
 * node_modules/.cache/ocgw-compile, is overridden by NODE_COMPILE_CACHE).
 */
import { mkdir, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { type Rss, type Spawned, readRss, signalChild, spawnNode } from "./processes.ts";
import { withTimeout } from "./stats.ts";

export const CLI_BIN = fileURLToPath(new URL("../../packages/cli/dist/bin.js", import.meta.url));
export const TOKEN = "ocgw-bench-token";

export type ImplicitMode = "ephemeral" | "agent" | "persistent" | "none";

/** The `runner` block of the child's config: the echo runner, or the openai runner against a (loopback) endpoint. */
export type RunnerConfig = { kind: "echo" } | { kind: "openai"; openai: { baseUrl: string; model: string } };

export interface GatewayChildOptions {
  /** A directory of its own inside the bench root: state/, root/, config.json, home/ go here. */
  dir: string;
  implicit?: ImplicitMode;
  idleTtlMs?: number;
  maxLeases?: number;
  gcOnStartup?: boolean;
  gcIntervalMs?: number;
  /** The ephemeral root; default `<dir>/root`. */
  root?: string;
  readyTimeoutMs?: number;
  /** Default the echo runner. */
  runner?: RunnerConfig;
  /** Extra environment variables. */
  env?: Record<string, string>;
  /**
   * Node's compile cache: the bench run's shared one (default; warm after the first start, as
   * every start after the first is for a user), `"off"` (NODE_DISABLE_COMPILE_CACHE: every module
   * is compiled at every start, as on a first start), or a directory of its own.
   */
  compileCache?: "shared" | "off" | { dir: string };
  /** Node options before the CLI's path (e.g. `--import <preload>`, `--cpu-prof`). */
  nodeArgs?: readonly string[];
  onStderrLine?: (line: string, at: number) => void;
}

export interface GatewayChild {
  readonly pid: number;
  readonly url: string;
  readonly token: string;
  readonly stateDir: string;
  readonly root: string;
  /** performance.now() just before spawn, and when the ready line arrived. */
  readonly spawnedAt: number;
  readonly readyAt: number;
  readonly process: Spawned;
  rss(): Promise<Rss>;
  /**
   * SIGINT (graceful: releases workspaces), wait up to `timeoutMs`, then SIGKILL. `peakKb` is the
   * highest VmHWM read (every 50 ms) while it was stopping.
   */
  stop(timeoutMs?: number): Promise<{ code: number | null; signal: NodeJS.Signals | null; ms: number; forced: boolean; peakKb: number }>;
}

let sharedCompileCache: string | undefined;

/** Sets the compile cache every child shares (a directory inside the bench root). */
export function useSharedCompileCache(dir: string): void {
  sharedCompileCache = dir;
}

/**
 * The environment of a child: ours minus anything that would redirect it, HOME and TMPDIR inside
 * `dir` (created here), the compile cache as asked, plus `extra`.
 */
export async function childEnv(dir: string, extra: Record<string, string> = {}, compileCache: GatewayChildOptions["compileCache"] = "shared"): Promise<NodeJS.ProcessEnv> {
  await mkdir(path.join(dir, "home"), { recursive: true });
  await mkdir(path.join(dir, "tmp"), { recursive: true });
  const dropped = new Set(["OCGW_CONFIG", "OCGW_STATE_DIR", "OCGW_PORT", "OCGW_GATEWAY_TOKEN", "OPENCLAW_WORKSPACE_DIR", "NODE_OPTIONS", "NODE_COMPILE_CACHE", "NODE_DISABLE_COMPILE_CACHE"]);
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !dropped.has(name)));
  const cache =
    compileCache === "off"
      ? { NODE_DISABLE_COMPILE_CACHE: "1" }
      : { NODE_COMPILE_CACHE: compileCache === "shared" ? (sharedCompileCache ?? path.join(dir, "compile-cache")) : compileCache.dir };
  return { ...env, HOME: path.join(dir, "home"), TMPDIR: path.join(dir, "tmp"), ...cache, ...extra };
}

export async function startGatewayChild(options: GatewayChildOptions): Promise<GatewayChild> {
  const { dir } = options;
  const stateDir = path.join(dir, "state");
  const root = options.root ?? path.join(dir, "root");
  const env = await childEnv(dir, options.env, options.compileCache);
  const configPath = path.join(dir, "config.json");
  const config = {
    gateway: { auth: { token: TOKEN } },
    workspace: {
      implicit: options.implicit ?? "ephemeral",
      ephemeral: { root, idleTtlMs: options.idleTtlMs ?? 0, ...(options.maxLeases === undefined ? {} : { maxLeases: options.maxLeases }) },
      gc: { onStartup: options.gcOnStartup ?? false, intervalMs: options.gcIntervalMs ?? 0 },
    },
    runner: options.runner ?? { kind: "echo" },
  };
  await writeFile(configPath, JSON.stringify(config, null, 2));

  let onReady!: (value: { url: string; at: number }) => void;
  const ready = new Promise<{ url: string; at: number }>((resolve) => (onReady = resolve));
  const spawnedAt = performance.now();
  const child = spawnNode([...(options.nodeArgs ?? []), CLI_BIN, "gateway", "run", "--port", "0", "--state-dir", stateDir, "--config", configPath], {
    env,
    cwd: dir,
    onStdoutLine: (line, at) => {
      const url = /ready on (ws:\/\/\S+)/.exec(line)?.[1];
      if (url !== undefined) onReady({ url, at });
    },
    onStderrLine: options.onStderrLine,
  });
  let started: { url: string; at: number };
  try {
    started = await withTimeout(
      Promise.race([
        ready,
        child.exited.then(({ code, signal }) => {
          throw new Error(`gateway exited before ready (code ${code}, signal ${signal}):\n${child.stderrTail().join("\n")}`);
        }),
      ]),
      options.readyTimeoutMs ?? 30_000,
      "gateway ready line",
    );
  } catch (error) {
    signalChild(child.child, "SIGKILL");
    throw error;
  }
  return {
    pid: child.pid,
    url: started.url,
    token: TOKEN,
    stateDir,
    root,
    spawnedAt,
    readyAt: started.at,
    process: child,
    rss: () => readRss(child.pid),
    async stop(timeoutMs = 60_000) {
      const t0 = performance.now();
      let peakKb = Number.NaN;
      // An exiting process (a zombie) has no VmHWM line any more: such reads are NaN and skipped.
      const sample = (): void =>
        void readRss(child.pid).then(
          (rss) => void (Number.isNaN(rss.peakKb) ? undefined : (peakKb = Number.isNaN(peakKb) ? rss.peakKb : Math.max(peakKb, rss.peakKb))),
          () => undefined,
        );
      sample();
      const sampler = setInterval(sample, 50);
      signalChild(child.child, "SIGINT");
      let forced = false;
      const exit = await withTimeout(child.exited, timeoutMs, "gateway graceful stop").catch(async () => {
        forced = true;
        signalChild(child.child, "SIGKILL");
        return child.exited;
      });
      clearInterval(sampler);
      return { ...exit, ms: performance.now() - t0, forced, peakKb };
    },
  };
}
