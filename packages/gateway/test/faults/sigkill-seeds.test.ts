/**
 * Fault suite 1: a gateway child is SIGKILLed at a seeded random point of a session's life, and
 * the next start's collector must leave nothing behind and touch nothing outside the root.
 *
 * Kill points (the child's ephemeral provider runs on a kill-point fs port, the `workspaceFs` seam):
 * - before-row:  on the root re-check `lstat` that precedes beforeCreate (no ledger row yet);
 * - row-dir:     right before `createLeaseDir` (row `acquiring`, no directory);
 * - dir-marker:  right before the marker `open` (row `acquiring`, directory without a marker);
 * - mid-run:     an external SIGKILL while a `/echo:sleep 5000 x` run holds its workspace (row
 *                `live`, or still `acquiring`: that transition is a deferred write);
 * - mid-removal: right after the rename to `.trash-*`, before `rm` (idleTtlMs 0: the release
 *                follows the run, which is ended by chat.abort; row `live` or `releasing`).
 * Before the victim, the seed also decides how many sessions complete normally (0–5, released by
 * run end, sessions.delete or sessions.reset) and how many extra sessions stay live (0–3). Links
 * into a canary directory outside the root are planted in a live workspace where there is one.
 *
 * Environment:
 *   OCGW_FAULT_SEEDS=<n>  run seeds 1..n (default 20; ~0.5 s each). Long form: OCGW_FAULT_SEEDS=500.
 *   OCGW_FAULT_SEED=<s>   run only seed s (to replay a failure; a failing seed prints its plan).
 */
import { randomUUID } from "node:crypto";
import { existsSync, readdirSync } from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it, onTestFailed } from "vitest";
import { canonicalizeKey, openStore } from "../../src/index.ts";
import { withTimeout } from "../protocol/helpers.ts";
import {
  type ChildGateway,
  call,
  chatSend,
  chatTurn,
  connectAdmin,
  gatewayConfig,
  leaseEntries,
  ledger,
  makeDirs,
  readLedger,
  spawnGatewayChild,
  startTestGateway,
} from "../gateway/lifecycle-harness.ts";
import type { KillFault } from "../fixtures/kill-fs-port.ts";
import { escapeRegExp, leaseDirPattern, makeCanary, plantCanaryLinks, prng, readMarkerBytes, snapshotTree, waitForLiveLease } from "./fault-helpers.ts";

const FAULT_CHILD = fileURLToPath(new URL("../fixtures/gateway-fault-child.ts", import.meta.url));

const KILL_POINTS = ["before-row", "row-dir", "dir-marker", "mid-run", "mid-removal"] as const;
type KillPoint = (typeof KILL_POINTS)[number];

interface Step {
  kind: "complete" | "live";
  key: string;
  /** How a completed session ends while idleTtlMs is 60 s (with 0 the run end releases it). */
  ending: "delete" | "reset";
}

interface Plan {
  seed: number;
  point: KillPoint;
  completed: number;
  live: number;
  steps: Step[];
}

/**
 * The point is drawn per block of five seeds: a seeded shuffle of the five points, so every five
 * consecutive seeds (1–5, 6–10, …) reach each point once, in a random order.
 */
function pointFor(seed: number): KillPoint {
  const block = Math.floor((seed - 1) / KILL_POINTS.length);
  const order = [...KILL_POINTS];
  const random = prng(0x9e3779b9 ^ block);
  for (let i = order.length - 1; i > 0; i -= 1) {
    const j = random.int(0, i);
    [order[i], order[j]] = [order[j] as KillPoint, order[i] as KillPoint];
  }
  return order[(((seed - 1) % KILL_POINTS.length) + KILL_POINTS.length) % KILL_POINTS.length] as KillPoint;
}

function planFor(seed: number): Plan {
  const random = prng(seed);
  const point = pointFor(seed);
  const completed = random.int(0, 5);
  const live = random.int(0, 3);
  const steps: Step[] = [
    ...Array.from({ length: completed }, (_, i): Step => ({ kind: "complete", key: `done-${i}`, ending: random.pick(["delete", "reset"] as const) })),
    ...Array.from({ length: live }, (_, i): Step => ({ kind: "live", key: `live-${i}`, ending: "delete" })),
  ];
  // Completed and live sessions interleave in a seeded order.
  for (let i = steps.length - 1; i > 0; i -= 1) {
    const j = random.int(0, i);
    [steps[i], steps[j]] = [steps[j] as Step, steps[i] as Step];
  }
  return { seed, point, completed, live, steps };
}

function seedsToRun(): number[] {
  const one = process.env["OCGW_FAULT_SEED"];
  if (one !== undefined && one !== "") return [Number(one)];
  const count = Number(process.env["OCGW_FAULT_SEEDS"] ?? "20");
  if (!Number.isInteger(count) || count < 1) throw new Error(`OCGW_FAULT_SEEDS must be a positive integer, got ${process.env["OCGW_FAULT_SEEDS"]}`);
  return Array.from({ length: count }, (_, i) => i + 1);
}

const canonical = (key: string): string => canonicalizeKey(key, { agentIds: ["main"], defaultAgentId: "main", mainKey: "main" }).key;

/** The kill-point fault for a plan; undefined for mid-run (killed from outside). */
function faultFor(plan: Plan, root: string, victimKey: string): KillFault | undefined {
  const victimDir = leaseDirPattern(root, canonical(victimKey));
  switch (plan.point) {
    case "before-row":
      // The root is lstat'ed once at start-up (ensurePrivateRoot), then once per acquire; every
      // earlier session acquired exactly once, one after the other.
      return { op: "lstat", pathPattern: `^${escapeRegExp(root)}$`, occurrence: 1 + plan.steps.length + 1, when: "before" };
    case "row-dir":
      return { op: "createLeaseDir", pathPattern: `${victimDir}$`, occurrence: 1, when: "before" };
    case "dir-marker":
      return { op: "open", pathPattern: `${victimDir}/\\.ocgw-lease\\.json$`, occurrence: 1, when: "before" };
    case "mid-removal":
      return { op: "rename", pathPattern: `${victimDir}$`, occurrence: 1, when: "after" };
    case "mid-run":
      return undefined;
  }
}

/** What a failing seed prints besides its plan: the dead child's stderr and the next gateway's log. */
interface SeedTrace {
  childStderr: () => string;
  log: string[];
}

async function runSeed(plan: Plan, trace: SeedTrace): Promise<void> {
  const dirs = await makeDirs();
  const canary = path.join(dirs.base, "canary");
  await makeCanary(canary, plan.seed);
  const canaryBefore = await snapshotTree(canary);

  const idleTtlMs = plan.point === "mid-removal" ? 0 : 60_000;
  const victimKey = "victim";
  const fault = faultFor(plan, dirs.root, victimKey);
  const child: ChildGateway = await spawnGatewayChild(gatewayConfig({ ...dirs, idleTtlMs }), {
    fixture: FAULT_CHILD,
    args: fault === undefined ? [] : [JSON.stringify(fault)],
  });
  trace.childStderr = child.stderr;
  const client = await connectAdmin(child.url);

  // The sessions before the victim, one at a time (the before-row count depends on it).
  const liveDirs: string[] = [];
  for (const step of plan.steps) {
    if (step.kind === "live" && idleTtlMs === 0) {
      // With idleTtlMs 0 a workspace stays only while a run holds it.
      await chatSend(client, step.key, "/echo:sleep 600000 holding");
      liveDirs.push((await waitForLiveLease(client, step.key)).path as string);
      continue;
    }
    const end = await chatTurn(client, step.key, `hello ${step.key}`);
    expect(end.state).toBe("final");
    if (step.kind === "complete" && idleTtlMs > 0) await call(client, `sessions.${step.ending}`, { key: step.key });
    const { leases } = await call<{ leases: { state: string; path: string }[] }>(client, "workspaces.list", { sessionKey: step.key });
    expect(leases).toHaveLength(1);
    if (step.kind === "complete") expect(leases[0]?.state).toBe("released");
    else {
      expect(leases[0]?.state).toBe("live");
      liveDirs.push(leases[0]?.path as string);
    }
  }
  expect(await leaseEntries(dirs.root)).toHaveLength(plan.live);

  // The victim, killed at the plan's point.
  const victimRunId = randomUUID();
  let plantedIn: string | undefined;
  const sendVictim = (message: string): void => client.sendJson({ type: "req", id: `victim-${victimRunId}`, method: "chat.send", params: { sessionKey: victimKey, message, idempotencyKey: victimRunId } });
  if (plan.point === "mid-run" || plan.point === "mid-removal") {
    sendVictim(plan.point === "mid-run" ? "/echo:sleep 5000 x" : "/echo:sleep 600000 x");
    plantedIn = (await waitForLiveLease(client, victimKey)).path as string;
    await plantCanaryLinks(plantedIn, canary);
    if (plan.point === "mid-run") process.kill(child.pid, "SIGKILL");
    // The abort ends the run; the run-end release renames the workspace to trash and the child dies.
    else client.sendJson({ type: "req", id: `abort-${victimRunId}`, method: "chat.abort", params: { sessionKey: victimKey } });
  } else {
    plantedIn = liveDirs[0];
    if (plantedIn !== undefined) await plantCanaryLinks(plantedIn, canary);
    sendVictim("hello victim");
  }
  expect(await withTimeout(child.exited, `the child to die at ${plan.point}`, 20_000)).toEqual({ code: null, signal: "SIGKILL" });
  if (fault !== undefined) expect(child.stderr()).toContain(`[fault] SIGKILL ${fault.when} ${fault.op} `);
  client.ws.terminate();

  // The dead child left the state of its kill point (or, for a deferred transition, the one before).
  const victimRows = readLedger(dirs.stateDir).filter((row) => row.sessionKey === canonical(victimKey));
  const entries = await leaseEntries(dirs.root);
  const trash = entries.filter((name) => name.startsWith(".trash-"));
  expect(entries.filter((name) => !name.startsWith(".trash-")).sort()).toEqual(
    [...liveDirs, ...(plan.point === "dir-marker" || plan.point === "mid-run" ? [victimRows[0]?.path as string] : [])].map((dir) => path.basename(dir)).sort(),
  );
  if (plan.point === "before-row") expect(victimRows).toEqual([]);
  else {
    expect(victimRows).toHaveLength(1);
    const [row] = victimRows;
    // The row before the directory is committed at once; `live` and `releasing` are deferred
    // writes (store.deferred), which a kill within a second of them may lose: the row is then
    // still in the state before, which the next start must handle just the same.
    const expectedStates: Record<KillPoint, string[]> = {
      "before-row": [],
      "row-dir": ["acquiring"],
      "dir-marker": ["acquiring"],
      "mid-run": ["acquiring", "live"],
      "mid-removal": ["live", "releasing"],
    };
    expect(expectedStates[plan.point]).toContain(row?.state);
    expect(existsSync(row?.path as string)).toBe(plan.point === "dir-marker" || plan.point === "mid-run");
    if (plan.point === "dir-marker") expect(await readMarkerBytes(row?.path as string)).toBeNull();
  }
  expect(trash.length).toBe(plan.point === "mid-removal" ? 1 : 0);
  if (plan.point === "mid-removal") expect(trash[0]?.startsWith(`.trash-${child.instanceId}-`)).toBe(true);

  // The next start, on the same state dir and root.
  const gateway = await startTestGateway({ ...dirs, idleTtlMs: 60_000, onStartup: true }, (line) => trace.log.push(line));
  const report = await withTimeout(gateway.startupCollection, "the start-up collection", 20_000);
  expect(report).toBeDefined();
  expect(report?.sweep.failed).toBe(0);
  expect(await leaseEntries(dirs.root)).toEqual([]);
  expect(readdirSync(path.join(dirs.root, ".instances")).some((name) => name.startsWith(child.instanceId))).toBe(false);
  const deadRows = ledger(gateway.store).filter((row) => row.instanceId === child.instanceId);
  expect(deadRows).toHaveLength(plan.completed + plan.live + (plan.point === "before-row" ? 0 : 1));
  for (const row of deadRows) expect(row.state, `${row.sessionKey} ${row.leaseId}`).toBe("released");
  expect(gateway.store.countLeases()).toMatchObject({ acquiring: 0, live: 0, releasing: 0, failed: 0 });
  // The victim's run: interrupted by the crash (marked at this start), or aborted before the removal.
  const store = openStore({ path: path.join(dirs.stateDir, "ocgw.sqlite") });
  try {
    expect(store.getRun(victimRunId)?.status).toBe(plan.point === "mid-removal" ? "aborted" : "error");
  } finally {
    store.close();
  }
  expect(await snapshotTree(canary)).toEqual(canaryBefore);
}

describe("SIGKILL at seeded points of a session's life", () => {
  it("the default seeds reach every kill point", () => {
    const points = new Set(Array.from({ length: 20 }, (_, i) => planFor(i + 1).point));
    expect([...points].sort()).toEqual([...KILL_POINTS].sort());
  });

  for (const seed of seedsToRun()) {
    const plan = planFor(seed);
    it(`seed ${seed}: ${plan.point} after ${plan.completed} completed, ${plan.live} live`, async () => {
      const trace: SeedTrace = { childStderr: () => "", log: [] };
      onTestFailed(() =>
        console.log(
          `fault seed ${seed} failed (replay: OCGW_FAULT_SEED=${seed}); plan ${JSON.stringify(plan)}\n` +
            `child stderr:\n${trace.childStderr()}next gateway's log:\n${trace.log.join("\n")}`,
        ),
      );
      await runSeed(plan, trace);
    });
  }
});
