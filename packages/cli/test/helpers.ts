/**
 * Test helpers for the ocgw CLI: per-test temp dirs (removed afterwards), in-process `run` with
 * captured output, a real gateway on 127.0.0.1:0, and the real bin in a child process.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs/promises";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { type GatewayHandle, startGateway } from "@ocgw/gateway";
import { onTestFinished } from "vitest";
import { run } from "../src/run.ts";

export const TOKEN = "cli-test-token";
/** The repository root (the bin is spawned from here, as `npm start` does). */
export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));
export const BIN = path.join("packages", "cli", "src", "bin.ts");
/** The bin runs the sources: sibling packages resolve through their "ocgw-source" export condition. */
export const SOURCE_CONDITION = "--conditions=ocgw-source";
/** Only turns a hang into a failure; never asserted on. */
export const HANG_MS = 15_000;

export interface TestDir {
  /** The real path of the test's temp dir. */
  readonly dir: string;
  readonly stateDir: string;
  /** The ephemeral root the config names (`<dir>/ephemeral`). */
  readonly root: string;
  /** A config file naming the ephemeral root (and no periodic collector). */
  readonly config: string;
  /** An environment with nothing from the real one but PATH; HOME → `dir`, OCGW_CONFIG → `config`, OCGW_STATE_DIR → `stateDir`. */
  readonly env: NodeJS.ProcessEnv;
}

/** A temp dir under os.tmpdir()/ocgw-cli-*, removed when the test finishes (OCGW_KEEP_TMP=1 keeps it). */
export async function tempDir(): Promise<TestDir> {
  const dir = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "ocgw-cli-")));
  onTestFinished(async () => {
    if (process.env["OCGW_KEEP_TMP"] === "1") return;
    await makeRemovable(dir);
    await fs.rm(dir, { recursive: true, force: true });
  });
  const stateDir = path.join(dir, "state");
  const root = path.join(dir, "ephemeral");
  const config = path.join(dir, "ocgw.json5");
  await fs.writeFile(config, `// test config\n{ workspace: { ephemeral: { root: ${JSON.stringify(root)} }, gc: { intervalMs: 0 } } }\n`);
  // HOME and OCGW_STATE_DIR inside the test's dir: the CLI never reads the real ~/.ocgw (its token file, its config).
  return { dir, stateDir, root, config, env: { PATH: process.env["PATH"], HOME: dir, OCGW_CONFIG: config, OCGW_STATE_DIR: stateDir } };
}

async function makeRemovable(dir: string): Promise<void> {
  // A test may leave a 0500 directory behind; deletion needs u+w everywhere.
  const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
  await fs.chmod(dir, 0o700).catch(() => undefined);
  for (const entry of entries) if (entry.isDirectory()) await makeRemovable(path.join(dir, entry.name));
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** `run(argv)` in-process with captured stdout/stderr. */
export async function runCli(argv: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; signal?: AbortSignal } = {}): Promise<RunResult> {
  let stdout = "";
  let stderr = "";
  const code = await run(argv, {
    stdout: { write: (chunk: string) => (stdout += chunk) },
    stderr: { write: (chunk: string) => (stderr += chunk) },
    env: options.env ?? { PATH: process.env["PATH"] },
    cwd: options.cwd ?? process.cwd(),
    signal: options.signal,
    exit: (exitCode) => {
      throw new Error(`run() asked for a hard exit (${exitCode})`);
    },
  });
  return { code, stdout, stderr };
}

/** Starts a real gateway for the test (token TOKEN, root `<dir>/ephemeral`); closed when the test ends. */
export async function startTestGateway(t: TestDir, overrides: Record<string, unknown> = {}): Promise<GatewayHandle> {
  const gateway = await startGateway(
    {
      stateDir: t.stateDir,
      gateway: { port: 0, auth: { token: TOKEN } },
      workspace: { ephemeral: { root: t.root }, gc: { intervalMs: 0 } },
      ...overrides,
    },
    { log: () => undefined },
  );
  onTestFinished(() => gateway.close("test finished"));
  await gateway.startupCollection;
  return gateway;
}

/** A loopback port nothing listens on (bound, then released). */
export async function closedPort(): Promise<number> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

/** A TCP server that accepts connections and never speaks: a gateway that never finishes the handshake. */
export async function silentServer(): Promise<string> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  onTestFinished(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `ws://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
}

export interface SpawnedGateway {
  readonly child: ChildProcess;
  readonly url: string;
  readonly stdout: () => string;
  readonly stderr: () => string;
  /** Resolves with the exit code (or the signal name) once the child has exited. */
  readonly exited: Promise<number | string>;
}

/** Spawns `node packages/cli/src/bin.ts gateway run …` and waits for its ready line. Killed (by its PID) if still running when the test ends. */
export async function spawnGateway(args: readonly string[], env: NodeJS.ProcessEnv): Promise<SpawnedGateway> {
  const child = spawn(process.execPath, [SOURCE_CONDITION, BIN, "gateway", "run", ...args], { cwd: REPO_ROOT, env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  child.stdout.setEncoding("utf8").on("data", (chunk: string) => (stdout += chunk));
  child.stderr.setEncoding("utf8").on("data", (chunk: string) => (stderr += chunk));
  const exited = new Promise<number | string>((resolve) => child.on("exit", (code, signal) => resolve(code ?? signal ?? -1)));
  onTestFinished(async () => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      process.kill(child.pid, "SIGKILL");
      await exited;
    }
  });
  const line = await waitFor(() => /^ocgw gateway ready on (ws:\/\/\S+) /m.exec(stdout)?.[1], "the ready line", () => `stdout: ${stdout}\nstderr: ${stderr}`);
  return { child, url: line, stdout: () => stdout, stderr: () => stderr, exited };
}

/** Polls until `probe` returns a value; fails after HANG_MS. */
export async function waitFor<T>(probe: () => T | undefined, what: string, context: () => string = () => ""): Promise<T> {
  const deadline = Date.now() + HANG_MS;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${HANG_MS} ms\n${context()}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** Names in an ephemeral root that are lease directories (not `.instances`, `.trash-*`, locks). */
export async function leaseDirs(root: string): Promise<string[]> {
  const names = await fs.readdir(root).catch(() => [] as string[]);
  return names.filter((name) => !name.startsWith(".")).sort();
}

/** sha256 of every file below `dir` (links hashed by their target string, never followed), by relative path. */
export async function hashTree(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const walk = async (current: string): Promise<void> => {
    for (const entry of await fs.readdir(current, { withFileTypes: true })) {
      const full = path.join(current, entry.name);
      const rel = path.relative(dir, full);
      if (entry.isSymbolicLink()) out.set(rel, `link:${await fs.readlink(full)}`);
      else if (entry.isDirectory()) {
        out.set(`${rel}/`, "dir");
        await walk(full);
      } else out.set(rel, createHash("sha256").update(await fs.readFile(full)).digest("hex"));
    }
  };
  await walk(dir);
  return out;
}
