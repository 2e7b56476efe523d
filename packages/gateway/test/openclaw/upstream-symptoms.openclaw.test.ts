/**
 * The regression proof of the upstream pull requests in docs/upstream-pr.md, one `describe` per PR.
 * "fails before" runs the real OpenClaw 2026.9.6 (isolated root, loopback mock model) and asserts
 * the symptom IS there; "passes after" runs the same scenario through ocgw and asserts it clean.
 * One OpenClaw life (start, the scenario, a restart) is shared by the three "before" halves: two
 * starts cost about a minute on a 2-core machine, and the restart is part of the third symptom.
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { call, chatTurn, connectAdmin, gatewayConfig, leaseEntries, ledger, makeDirs, request, spawnGatewayChild, startTestGateway } from "../gateway/lifecycle-harness.ts";
import { type MockModel, startMockModel } from "./mock-model.ts";
import { type Defer, type OpenClawRoot, type RunningOpenClaw, chatOn, hashFiles, openClawRoot, startOpenClaw, treeSize } from "./openclaw-harness.ts";

/** Per-session sandbox workspaces for every non-main session (no Docker here: the runs fail, the directories stay). */
const SANDBOXED = { defaults: { sandbox: { mode: "non-main", scope: "session" } }, entries: { main: {} } };
const KEYS = ["agent:main:s1", "agent:main:s2", "agent:main:s3"];
/** Each session-ending method, on a key of an agent that is not configured. */
const GHOST_CALLS = [
  ["sessions.patch", "ghost-p", { key: "agent:ghost-p:x", label: "l" }],
  ["sessions.reset", "ghost-r", { key: "agent:ghost-r:x" }],
  ["sessions.delete", "ghost-d", { key: "agent:ghost-d:x" }],
] as const;

interface GhostCall {
  readonly method: string;
  readonly ok: boolean;
  /** Files below `<stateDir>/agents/<ghost id>/` right after the call. */
  readonly files: string[];
  readonly bytes: number;
}

/** What the real OpenClaw did; each "fails before" test asserts on its part. */
interface Observed {
  /** `<stateDir>/sandboxes/*` after one message on each of KEYS. */
  made: string[];
  sizes: { files: number; bytes: number }[];
  /** After sessions.delete on two keys, sessions.reset on the third and sessions.cleanup {enforce}. */
  afterEnd: string[];
  ghosts: GhostCall[];
  /** chat.send on an unknown agent (already refused upstream), for contrast. */
  chatSendGhost: string;
  /** After a graceful stop and a new start on the same state dir. */
  afterRestart: string[];
  /** `<stateDir>/agents/ghost-*` once that gateway has stopped. */
  ghostDirsAfterStop: string[];
}

const sandboxDirs = async (oc: OpenClawRoot): Promise<string[]> => (await fs.readdir(path.join(oc.stateDir, "sandboxes")).catch(() => [] as string[])).sort();
const agentDirs = async (oc: OpenClawRoot): Promise<string[]> => (await fs.readdir(path.join(oc.stateDir, "agents"))).sort();
/** The message of the error OpenClaw answered (the client's RPC_FAILED carries it in `details.remote`). */
const remoteMessage = (error: unknown): string => (error as { details?: { remote?: { message?: string } } }).details?.remote?.message ?? String(error);

async function ghostCall(oc: OpenClawRoot, gateway: RunningOpenClaw, [method, id, params]: (typeof GHOST_CALLS)[number]): Promise<GhostCall> {
  const ok = await gateway.client.call(method, params, { timeoutMs: 60_000 }).then(
    () => true,
    () => false,
  );
  const dir = path.join(oc.stateDir, "agents", id);
  const files = (await fs.readdir(dir, { recursive: true }).catch(() => [] as string[])).sort();
  return { method, ok, files, bytes: files.length === 0 ? 0 : (await treeSize(dir)).bytes };
}

async function endSessions(gateway: RunningOpenClaw): Promise<void> {
  for (const key of KEYS.slice(0, 2)) await gateway.client.call("sessions.delete", { key }, { timeoutMs: 60_000 });
  await gateway.client.call("sessions.reset", { key: KEYS[2] }, { timeoutMs: 60_000 });
  await gateway.client.call("sessions.cleanup", { enforce: true }, { timeoutMs: 60_000 });
}

async function observeOpenClaw(model: MockModel, defer: Defer): Promise<Observed> {
  const oc = await openClawRoot(defer);
  const first = await startOpenClaw(oc, model.baseUrl, SANDBOXED, defer);
  await chatOn(first.client, KEYS);
  const made = await sandboxDirs(oc);
  const sizes = await Promise.all(made.map((name) => treeSize(path.join(oc.stateDir, "sandboxes", name))));
  await endSessions(first);
  const afterEnd = await sandboxDirs(oc);
  await first.stop();
  // The unknown ids go to the second gateway: a start with their databases present left six
  // state-handles lock files in /tmp/openclaw-state-locks-<uid>/ named for no path under the root.
  const second = await startOpenClaw(oc, model.baseUrl, SANDBOXED, defer);
  const afterRestart = await sandboxDirs(oc);
  const ghosts: GhostCall[] = [];
  for (const attempt of GHOST_CALLS) ghosts.push(await ghostCall(oc, second, attempt));
  const chatSendGhost = await second.client.call("chat.send", { sessionKey: "agent:ghost-c:x", message: "hi", idempotencyKey: "ghost-c" }).then(() => "accepted", remoteMessage);
  await second.stop();
  const ghostDirsAfterStop = (await agentDirs(oc)).filter((name) => name.startsWith("ghost-"));
  return { made, sizes, afterEnd, ghosts, chatSendGhost, afterRestart, ghostDirsAfterStop };
}

let model: MockModel;
let observed: Observed;
const cleanups: (() => Promise<void>)[] = [];
beforeAll(async () => {
  model = await startMockModel();
  observed = await observeOpenClaw(model, (cleanup) => cleanups.push(cleanup));
});
afterAll(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  await model.close();
});

/** An ocgw gateway in this process whose leases stay until the session ends (idle TTL 10 min). */
async function ocgwGateway(dirs: { stateDir: string; root: string }) {
  const handle = await startTestGateway({ ...dirs, idleTtlMs: 600_000, onStartup: false });
  return { handle, client: await connectAdmin(handle.url) };
}

describe("PR 1: a session's sandbox workspace ends with the session", () => {
  it("fails before: OpenClaw 2026.9.6 keeps every per-session sandbox workspace after sessions.delete and sessions.reset", () => {
    expect(observed.made, "one sandbox workspace per fresh key").toHaveLength(KEYS.length);
    expect(observed.made.every((name) => /^workspace-[0-9a-f]{32}$/.test(name))).toBe(true);
    expect(observed.sizes.every((size) => size.files > 0 && size.bytes > 0), "each is seeded").toBe(true);
    expect(observed.afterEnd, "delete ×2, reset ×1, cleanup {enforce}: none removed").toEqual(observed.made);
    const size = observed.sizes[0];
    console.log(`[openclaw suite] PR 1 before: ${observed.made.length} sessions → ${observed.made.length} sandbox workspaces of ${size?.bytes} B in ${size?.files} files each; after delete ×2 + reset ×1 + cleanup: ${observed.afterEnd.length} left`);
  });

  it("passes after: through ocgw, sessions.delete and sessions.reset release every implicit session's workspace", async () => {
    const dirs = await makeDirs();
    const { handle, client } = await ocgwGateway(dirs);
    for (const key of KEYS) expect((await chatTurn(client, key, `hello from ${key}`)).state).toBe("final");
    const leases = await leaseEntries(dirs.root);
    expect(leases).toHaveLength(KEYS.length);
    const size = await treeSize(path.join(dirs.root, leases[0] as string));
    for (const key of KEYS.slice(0, 2)) await call(client, "sessions.delete", { key });
    await call(client, "sessions.reset", { key: KEYS[2] });
    expect(await leaseEntries(dirs.root)).toEqual([]);
    const rows = ledger(handle.store);
    expect(rows.map((row) => [row.sessionKey, row.state, row.releaseReason])).toEqual([
      [KEYS[0], "released", "delete"],
      [KEYS[1], "released", "delete"],
      [KEYS[2], "released", "reset"],
    ]);
    console.log(`[openclaw suite] PR 1 after (ocgw): ${KEYS.length} sessions → ${leases.length} leases of ${size.bytes} B in ${size.files} files each; after delete ×2 + reset ×1: 0 left`);
  });
});

describe("PR 2: sessions.patch/reset/delete refuse an agent id that is not configured", () => {
  it("fails before: OpenClaw 2026.9.6 answers ok and mints a database for each unknown id", () => {
    expect(observed.chatSendGhost, "chat.send already refuses it").toBe('Agent "ghost-c" no longer exists in configuration');
    for (const ghost of observed.ghosts) {
      expect(ghost.ok, ghost.method).toBe(true);
      expect(ghost.files, ghost.method).toContain(path.join("agent", "openclaw-agent.sqlite"));
    }
    expect(observed.ghostDirsAfterStop, "still there once the gateway has stopped").toEqual(["ghost-d", "ghost-p", "ghost-r"]);
    console.log(`[openclaw suite] PR 2 before: ${observed.ghosts.map((ghost) => `${ghost.method} → ${ghost.files.length} files, ${ghost.bytes} B`).join("; ")}`);
  });

  it("passes after: ocgw refuses all three with upstream's message and writes nothing", async () => {
    const dirs = await makeDirs();
    const { client } = await ocgwGateway(dirs);
    const before = [...(await hashFiles(dirs.base)).keys()].sort();
    for (const [method, id, params] of GHOST_CALLS) {
      const res = await request(client, method, params);
      expect(res.ok, method).toBe(false);
      expect(res.error?.message, method).toBe(`Agent "${id}" no longer exists in configuration`);
    }
    expect([...(await hashFiles(dirs.base)).keys()].sort(), "no file or directory added").toEqual(before);
  });
});

describe("PR 3: a start-up sweeper reclaims what a dead gateway left", () => {
  it("fails before: a restart of OpenClaw 2026.9.6 removes none of the orphaned sandbox workspaces", () => {
    expect(observed.afterRestart).toEqual(observed.made);
    console.log(`[openclaw suite] PR 3 before: after a restart ${observed.afterRestart.length} of ${observed.made.length} sandbox workspaces left (2 of them for deleted sessions)`);
  });

  it("passes after: the next ocgw start reclaims every lease of a SIGKILLed gateway", async () => {
    const dirs = await makeDirs();
    const child = await spawnGatewayChild(gatewayConfig({ ...dirs, idleTtlMs: 600_000 }));
    const client = await connectAdmin(child.url);
    for (const key of KEYS) expect((await chatTurn(client, key, `hello from ${key}`)).state).toBe("final");
    process.kill(child.pid, "SIGKILL");
    await child.exited;
    expect(await leaseEntries(dirs.root)).toHaveLength(KEYS.length);
    const handle = await startTestGateway({ ...dirs, idleTtlMs: 600_000, onStartup: true });
    const report = await handle.startupCollection;
    expect(report?.sweep.reclaimed).toBe(KEYS.length);
    expect(await leaseEntries(dirs.root)).toEqual([]);
    console.log(`[openclaw suite] PR 3 after (ocgw): ${KEYS.length} leases of a SIGKILLed gateway → ${report?.sweep.reclaimed} reclaimed by the next start, 0 left`);
  });
});
