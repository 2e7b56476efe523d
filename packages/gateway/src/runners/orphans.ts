/**
 * What a crashed gateway's runs left running. A graceful stop kills every process of its runs; a
 * crash (SIGKILL, an OOM kill of the gateway alone) kills none, and they go on working, in an
 * agent's workspace too, for runs the next start marks as failed. Every run is recorded with the
 * random token its processes carry (OCGW_RUN_TOKEN) and the identity of the gateway process that
 * ran it. At start-up, before anything new runs, the processes carrying the token of a run whose
 * gateway is proven dead (same host, boot and pid namespace; its pid gone or reused: see
 * `processState` in @ocgw/workspace) are stopped, with their descendants: SIGTERM, SIGKILL after
 * the grace. A run whose gateway is alive (another gateway on the same state directory) or cannot
 * be judged keeps its processes. Linux only (the token is read from /proc/<pid>/environ). A
 * graceful stop that killed every process of its runs forgets their tokens, so a start after it
 * scans nothing.
 */
import { type ProcessIdentity, currentProcess, processState } from "@ocgw/workspace";
import type { RunProcessOwner } from "../store/index.ts";
import { type SweepTarget, killMembers, scanProcesses, selectMembers } from "./descendants.ts";

/** This gateway process as each of its runs records it (JSON of its ProcessIdentity). */
export const RUN_OWNER: string = JSON.stringify(currentProcess());

export interface PreviousRunsReport {
  /** Processes found carrying the token of a run whose gateway is proven dead (with their descendants). */
  readonly found: number;
  /** Those still alive after SIGKILL, as `pid (name)`. */
  readonly survivors: readonly string[];
}

function ownerProvenDead(owner: string): boolean {
  try {
    const identity = JSON.parse(owner) as ProcessIdentity;
    return typeof identity.pid === "number" && typeof identity.host === "string" && processState(identity) === "dead";
  } catch {
    return false;
  }
}

/** Stops every process of the recorded runs whose gateway is proven dead; resolves with what it found and what survived. */
export async function stopPreviousRuns(runs: readonly RunProcessOwner[], graceMs: number): Promise<PreviousRunsReport> {
  if (process.platform !== "linux") return { found: 0, survivors: [] };
  const verdicts = new Map<string, boolean>();
  const provenDead = (owner: string): boolean => {
    let dead = verdicts.get(owner);
    if (dead === undefined) verdicts.set(owner, (dead = ownerProvenDead(owner)));
    return dead;
  };
  const tokens = runs.filter((run) => provenDead(run.owner)).map((run) => run.processToken);
  if (tokens.length === 0) return { found: 0, survivors: [] };
  const target: SweepTarget = { runs: tokens.map((token) => ({ token, pgid: null, startTicks: null })), dirs: [] };
  const found = selectMembers(await scanProcesses(), target);
  if (found.length === 0) return { found: 0, survivors: [] };
  const survivors = await killMembers(target, graceMs);
  return { found: found.length, survivors: survivors.map((entry) => `${entry.pid} (${entry.name})`) };
}
