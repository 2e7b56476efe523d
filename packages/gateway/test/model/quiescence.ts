/**
 * The end of a sequence: let everything finish (gates opened, every run ended, idle timers run
 * out, a collection done), check the strict invariants, then stop the gateway gracefully and check
 * that it left nothing behind.
 */
import { readdir } from "node:fs/promises";
import * as path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import type { Model } from "./commands.ts";
import { afterCollectionViolations, quiescentHistoryViolations, stepViolations, throwIfAny, viewOf } from "./invariants.ts";
import { HANG_BOUND_MS, KEYS, type ModelSystem, canonicalKey, isMachinery, processesUnder, runnerProcesses } from "./system.ts";

/** Idle TTLs up to this are waited out at quiescence; longer ones keep their workspaces until the stop. */
const SHORT_TTL_MS = 1000;

async function until(condition: () => boolean | Promise<boolean>, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) return false;
    await sleep(10);
  }
  return true;
}

/** Requests of the running gateway's connection still unanswered, and its runs without a terminal event. */
function pending(system: ModelSystem): string[] {
  const view = viewOf(system, system.current().conn);
  const missing: string[] = [];
  for (const request of view.requests) {
    const answers = view.responses.get(request.id) ?? [];
    const expected = request.method === "agent" && view.frames[answers[0] ?? -1]?.ok === true ? 2 : 1;
    if (answers.length < expected) missing.push(`${request.method} ${request.id} (step ${request.step}): ${answers.length} of ${expected} response(s)`);
    if (request.run !== undefined && view.acks.has(request.run.runId) && !view.terminals.has(request.run.runId)) missing.push(`run ${request.run.runId} (${request.run.behaviour}, step ${request.step}): no terminal event`);
  }
  return missing;
}

export async function quiesce(system: ModelSystem, model: Model): Promise<void> {
  system.step += 1;
  system.trace.push(`#${system.step} quiescence`);
  const what = "at quiescence";
  for (const request of system.requests) if (request.run?.behaviour === "slow") await system.openGate(request.run.runId);

  if (!(await until(() => pending(system).length === 0, HANG_BOUND_MS))) throwIfAny(pending(system).map((line) => `never settled: ${line}`), system, what);

  const instanceId = system.current().instanceId;
  const holding = (): string[] =>
    system
      .ledger()
      .filter((row) => row.instanceId === instanceId && row.state !== "released")
      .map((row) => `lease ${row.leaseId} of ${row.sessionKey} still ${row.state} ${system.settings.idleTtlMs} ms after its last run`);
  if (system.settings.idleTtlMs <= SHORT_TTL_MS && !(await until(() => holding().length === 0, system.settings.idleTtlMs + 15_000))) throwIfAny(holding(), system, what);

  // A collection that runs to the end (the start-up one may hold the root for a moment).
  const gcDeadline = Date.now() + HANG_BOUND_MS;
  for (;;) {
    const answer = await system.response(system.send("workspaces.gc", {}));
    if (answer?.ok === true) {
      const report = answer.payload as { failed: number; reported: number; entries: unknown[] };
      const violations = afterCollectionViolations(system);
      if (report.failed !== 0 || report.reported !== 0) violations.push(`the collection failed ${report.failed} and reported ${report.reported} entries: ${JSON.stringify(report.entries)}`);
      throwIfAny(violations, system, what);
      break;
    }
    if (Date.now() > gcDeadline) throwIfAny([`workspaces.gc stayed busy for ${HANG_BOUND_MS} ms`], system, what);
    await sleep(50);
  }

  // Every run, of every gateway so far, has ended and is found; refused runs are not.
  const waits = system.requests.filter((request) => request.run !== undefined).map((request) => ({ run: request.run, wait: system.send("agent.wait", { runId: request.run?.runId, timeoutMs: 0 }) }));
  const violations: string[] = [];
  for (const { run, wait } of waits) {
    const answer = await system.response(wait);
    const payload = (answer?.payload ?? {}) as Record<string, unknown>;
    if (answer?.ok === true && payload["endedAt"] === undefined) violations.push(`agent.wait: run ${run?.runId} (${run?.behaviour}) has not ended: ${JSON.stringify(payload)}`);
  }

  const sessions = ((await system.response(system.send("sessions.list", { limit: 100 })))?.payload as { sessions: { key: string; workspaceMode: string; workspaceDir: string | null }[] }).sessions;
  const ledger = system.ledger();
  for (const key of KEYS) {
    const mode = model.modes[key];
    const row = sessions.find((session) => session.key === canonicalKey(key));
    if (mode === "absent" && row !== undefined) violations.push(`session ${key} should not exist, sessions.list has ${JSON.stringify(row)}`);
    if (mode !== "absent" && mode !== "uncertain" && row?.workspaceMode !== mode) violations.push(`session ${key} should have mode ${mode}, sessions.list has ${JSON.stringify(row)}`);
    const held = ledger.find((lease) => lease.sessionKey === canonicalKey(key) && lease.state === "live");
    if (row !== undefined && row.workspaceDir !== (held?.path ?? null)) violations.push(`session ${key} reports workspaceDir ${row.workspaceDir}, its live lease is ${held?.path ?? "none"}`);
  }

  violations.push(...(await stepViolations(system)), ...quiescentHistoryViolations(system));
  const liveRows = new Map<string, number>();
  for (const row of ledger) {
    if (row.state === "acquiring" || row.state === "releasing" || row.state === "failed") violations.push(`lease ${row.leaseId} of ${row.sessionKey} is ${row.state} at quiescence`);
    if (row.state !== "live") continue;
    if (row.instanceId !== instanceId) violations.push(`lease ${row.leaseId} of ${row.sessionKey} is live for a stopped gateway (${row.instanceId})`);
    if (system.settings.idleTtlMs <= SHORT_TTL_MS) violations.push(`lease ${row.leaseId} of ${row.sessionKey} is live after its idle TTL`);
    liveRows.set(row.sessionKey, (liveRows.get(row.sessionKey) ?? 0) + 1);
  }
  for (const [key, count] of liveRows) if (count > 1) violations.push(`session ${key} holds ${count} live leases`);
  const expectedDirs = ledger
    .filter((row) => row.state === "live" && row.kind === "ephemeral" && row.path !== null)
    .map((row) => path.basename(row.path as string))
    .sort();
  const entries = (await readdir(system.root)).sort();
  const leaseDirs = entries.filter((name) => !isMachinery(name));
  if (JSON.stringify(leaseDirs) !== JSON.stringify(expectedDirs)) violations.push(`the root holds ${JSON.stringify(leaseDirs)}, the live ephemeral leases are ${JSON.stringify(expectedDirs)}`);
  const trash = entries.filter((name) => name.startsWith(".trash-"));
  if (trash.length > 0) violations.push(`trash left in the root: ${trash.join(", ")}`);
  // Background jobs may outlive their runs, but only inside a workspace that is still live.
  for (const { pid, cwd } of await processesUnder(system.root)) {
    const owner = ledger.find((row) => row.state === "live" && row.path !== null && (cwd === row.path || cwd.startsWith(`${row.path}/`)));
    if (owner === undefined) violations.push(`process ${pid} still runs in ${cwd}, which is no live workspace`);
  }
  throwIfAny(violations, system, what);

  // The graceful stop releases every workspace and leaves nothing running.
  system.trace.push(`#${system.step + 1} final graceful stop`);
  await system.stop("graceful");
  const after: string[] = [];
  for (const row of system.ledger()) if (row.state !== "released") after.push(`lease ${row.leaseId} of ${row.sessionKey} is ${row.state} after the final graceful stop`);
  for (const name of (await readdir(system.root)).filter((entry) => entry !== ".instances")) after.push(`${name} is left in the root after the final graceful stop`);
  for (const { pid, cwd } of await processesUnder(system.root)) after.push(`process ${pid} still runs in ${cwd} after the final graceful stop`);
  const stragglers = await runnerProcesses(system.gates);
  if (stragglers.length > 0) after.push(`runner process(es) ${stragglers.join(", ")} alive after the final graceful stop`);
  throwIfAny(after, system, "after the final graceful stop");
}
