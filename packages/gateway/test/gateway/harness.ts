/**
 * Test harness: a real gateway on 127.0.0.1:0 with its own temp state dir and ephemeral root
 * (both inside one `ocgw-gw-*` temp dir), closed and removed when the test finishes.
 */
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { onTestFinished } from "vitest";
import type { WebSocket } from "ws";
import { startGateway } from "../../src/gateway.ts";
import type { GatewayHandle } from "../../src/gateway.ts";
import { TOKEN, connectClient } from "../protocol/helpers.ts";
import type { TestClient } from "../protocol/helpers.ts";

export { TOKEN };

export interface TestGateway {
  readonly gateway: GatewayHandle;
  readonly url: string;
  /** The test's temp dir (real path); everything the gateway writes lives below it. */
  readonly dir: string;
  readonly stateDir: string;
  /** The configured ephemeral root (`<dir>/ephemeral`). */
  readonly root: string;
}

export interface TestGatewayOptions {
  /** Configured agent ids (`agents.entries`); unset = the one implicit agent `main`. */
  agents?: readonly string[];
  /** `workspace.ephemeral.idleTtlMs`; unset = the default (15 min). */
  idleTtlMs?: number;
}

/** Starts a gateway for the current test; it is closed and its temp dir removed when the test ends. */
export async function startTestGateway(options: TestGatewayOptions = {}): Promise<TestGateway> {
  const dir = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "ocgw-gw-")));
  const stateDir = path.join(dir, "state");
  const root = path.join(dir, "ephemeral");
  const started: { gateway?: GatewayHandle } = {};
  onTestFinished(async () => {
    try {
      await started.gateway?.close("test finished");
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
  const gateway = await startGateway(
    {
      stateDir,
      gateway: { port: 0, auth: { token: TOKEN } },
      workspace: { ephemeral: { root, ...(options.idleTtlMs === undefined ? {} : { idleTtlMs: options.idleTtlMs }) }, gc: { intervalMs: 0 } },
      ...(options.agents === undefined ? {} : { agents: { entries: Object.fromEntries(options.agents.map((id) => [id, {}])) } }),
    },
    { log: () => undefined },
  );
  started.gateway = gateway;
  // The start-up sweep runs right after ready; let it finish so it never overlaps a test's gc.
  await gateway.startupCollection;
  return { gateway, url: gateway.url, dir, stateDir, root };
}

/** A connected operator client; `scopes` default to the helpers' read+write. */
export async function connect(url: string, scopes?: readonly string[]): Promise<TestClient> {
  const { client } = await connectClient(url, scopes === undefined ? {} : { scopes: [...scopes] });
  return client;
}

/** Names in the ephemeral root that are lease directories (not the `.instances`/`.trash-*`/lock machinery). */
export async function leaseDirs(root: string): Promise<string[]> {
  const names = await fs.readdir(root).catch(() => [] as string[]);
  return names.filter((name) => !name.startsWith(".")).sort();
}

/** Every path below `dir` (files and directories), depth first. */
export async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await fs.readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    out.push(full);
    if (entry.isDirectory()) out.push(...(await walk(full)));
  }
  return out;
}

/** Writes the frames to the socket in one go, so the gateway reads them in one chunk. */
export function burst(ws: WebSocket, frames: readonly Record<string, unknown>[]): void {
  const socket = (ws as unknown as { _socket: { cork(): void; uncork(): void } })._socket;
  socket.cork();
  for (const frame of frames) ws.send(JSON.stringify(frame));
  socket.uncork();
}
