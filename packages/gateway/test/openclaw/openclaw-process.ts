/**
 * The part of running the real OpenClaw that needs no test runner: its isolated environment under
 * a root of the caller's, its openclaw.json, its ready line and the lock files it leaves outside
 * the root. Shared by the suite's harness (openclaw-harness.ts) and the bench (bench/upstream.ts),
 * so both start OpenClaw the same way.
 */
import { createHash } from "node:crypto";
import * as fs from "node:fs/promises";
import * as net from "node:net";
import * as path from "node:path";
import { OPENCLAW_PACKAGE } from "./install.ts";
import { MOCK_MODEL_ID } from "./mock-model.ts";

/** The CLI of the installed package: `node <OPENCLAW_BIN> gateway run`. */
export const OPENCLAW_BIN = path.join(OPENCLAW_PACKAGE, "openclaw.mjs");
/** What OpenClaw prints once its gateway accepts connections (it may still refuse them for a moment). */
export const OPENCLAW_READY_LINE = /\[gateway\] ready\b/;

export interface OpenClawRoot {
  readonly root: string;
  readonly home: string;
  readonly stateDir: string;
  readonly configPath: string;
  /** The environment OpenClaw (and `ocgw` pointed at it) runs with. */
  readonly env: NodeJS.ProcessEnv;
}

/**
 * The layout and environment of an OpenClaw isolated in `root` (an existing, real path): creates
 * home/, tmp/ and state/ in it; HOME, TMPDIR and the state dir point there, Bonjour, respawn,
 * channels and auto-update are off.
 */
export async function openClawLayout(root: string): Promise<OpenClawRoot> {
  const home = path.join(root, "home");
  const stateDir = path.join(root, "state");
  await Promise.all(["home", "tmp", "state"].map((dir) => fs.mkdir(path.join(root, dir), { recursive: true })));
  const env: NodeJS.ProcessEnv = {
    PATH: `${path.dirname(process.execPath)}:/usr/local/bin:/usr/bin:/bin`,
    HOME: home,
    TMPDIR: path.join(root, "tmp"),
    OPENCLAW_STATE_DIR: stateDir,
    OPENCLAW_CONFIG_PATH: path.join(stateDir, "openclaw.json"),
    OPENCLAW_DISABLE_BONJOUR: "1",
    OPENCLAW_NO_RESPAWN: "1",
    OPENCLAW_SKIP_CHANNELS: "1",
    OPENCLAW_NO_AUTO_UPDATE: "1",
  };
  return { root, home, stateDir, configPath: path.join(stateDir, "openclaw.json"), env };
}

/**
 * OpenClaw keeps lifecycle locks in /tmp/openclaw-state-locks-<uid>/ (not under TMPDIR), named by
 * the hash of a database path, and never removes them; the ones named for this root's databases
 * go with the root. Call it before the root is removed (it reads the root to find them).
 */
export async function removeLifecycleLocks(root: string): Promise<void> {
  const dir = path.join("/tmp", `openclaw-state-locks-${process.getuid?.() ?? ""}`);
  const files = await fs.readdir(root, { recursive: true }).catch(() => [] as string[]);
  const hashes = files.filter((rel) => rel.includes(".sqlite")).map((rel) => createHash("sha256").update(path.join(root, rel.replace(/(\.sqlite).*$/, "$1"))).digest("hex").slice(0, 8));
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    if (hashes.some((hash) => name.endsWith(`.${hash}.lock.sqlite`))) await fs.rm(path.join(dir, name), { force: true });
  }
}

/** openclaw.json: loopback, token auth, the mock model, heartbeat off, plus the caller's `agents` block and any other top-level blocks (`plugins`). */
export function openClawConfig(oc: OpenClawRoot, port: number, token: string, modelBaseUrl: string, agents: Record<string, unknown>, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const defaults = (agents["defaults"] ?? {}) as Record<string, unknown>;
  return {
    gateway: { mode: "local", bind: "loopback", port, auth: { mode: "token", token } },
    update: { checkOnStart: false },
    telemetry: { enabled: false },
    discovery: { mdns: { mode: "off" } },
    logging: { file: path.join(oc.root, "openclaw.log") },
    models: {
      mode: "merge",
      catalogRefresh: { enabled: false },
      providers: {
        mock: {
          baseUrl: modelBaseUrl,
          apiKey: "mock-local",
          api: "openai-completions",
          models: [{ id: MOCK_MODEL_ID, name: "Mock", reasoning: false, input: ["text"], cost: { input: 0, output: 0, cacheRead: 0, cacheWrite: 0 }, contextWindow: 128000, maxTokens: 4096 }],
        },
      },
    },
    agents: { ...agents, defaults: { model: { primary: `mock/${MOCK_MODEL_ID}` }, heartbeat: { every: "0m" }, ...defaults } },
    ...extra,
  };
}

/** A loopback port that was free a moment ago (OpenClaw takes its port from the config, not 0). */
export async function freePort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as net.AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}
