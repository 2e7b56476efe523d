import { describe, expect, it } from "vitest";
import { type ProcessEntry, type SweepTarget, selectMembers } from "../../src/runners/descendants.ts";

const DIR = "/tmp/ocgw-root/agent-main-a-0123456789ab-lease";

/** A process as one scan of /proc reports it; by default working in {@link DIR} with no token. */
function entry(pid: number, over: Partial<ProcessEntry> = {}): ProcessEntry {
  return { pid, ppid: 1, pgrp: pid, startTicks: 1000 + pid, name: "sleep", cwd: DIR, token: null, ...over };
}

function pids(entries: readonly ProcessEntry[], target: SweepTarget): number[] {
  return selectMembers(entries, target).map((member) => member.pid);
}

describe("selectMembers: processes in a doomed directory", () => {
  const run = { token: "run-now", pgid: 50, startTicks: 1050 };

  it("takes a process there that carries an earlier run's token, one the runner no longer tracks", () => {
    const earlier = entry(60, { token: "run-before" });
    expect(pids([earlier], { runs: [run], dirs: [{ dir: DIR, sinceTicks: 1000 }] })).toEqual([60]);
  });

  it("spares a process there that carries another session's run token, and takes its untokened neighbour", () => {
    const others = entry(61, { token: "other-session" });
    const plain = entry(62);
    const target: SweepTarget = { runs: [run], dirs: [{ dir: DIR, sinceTicks: 1000 }], spare: new Set(["other-session"]) };
    expect(pids([others, plain], target)).toEqual([62]);
  });

  it("takes even a spared token in a dead gateway's directory (anyToken)", () => {
    const others = entry(61, { token: "other-session" });
    expect(pids([others], { runs: [], dirs: [{ dir: DIR, sinceTicks: null, anyToken: true }], spare: new Set(["other-session"]) })).toEqual([61]);
  });

  it("spares what started before the session's first run there, and what works elsewhere", () => {
    const older = entry(63, { startTicks: 900 });
    const elsewhere = entry(64, { cwd: "/tmp/ocgw-root/agent-main-b-lease", token: "run-before" });
    const prefix = entry(65, { cwd: `${DIR}-sibling` });
    expect(pids([older, elsewhere, prefix], { runs: [run], dirs: [{ dir: DIR, sinceTicks: 1000 }] })).toEqual([]);
  });
});
