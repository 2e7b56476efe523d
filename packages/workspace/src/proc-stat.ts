import { readFileSync } from "node:fs";

/** What `/proc/<pid>/stat` says of a process (Linux). */
export interface ProcStat {
  /** Field 3: `R`, `S`, `Z` (zombie), `X` (dead), … */
  readonly state: string;
  /** Field 4. */
  readonly ppid: number;
  /** Field 5: the process group. */
  readonly pgrp: number;
  /** Field 22: start time in clock ticks after boot (with the pid, it names one process). */
  readonly startTicks: number;
  /** Field 2: the command name, without its parentheses. */
  readonly name: string;
}

/** Parses one `/proc/<pid>/stat` text; null when it is not one. */
export function parseProcStat(text: string): ProcStat | null {
  // The command name is in parentheses and may itself hold spaces or ")": count from the last ")".
  const close = text.lastIndexOf(")");
  const fields = text.slice(close + 2).split(" ");
  const [state, ppid, pgrp, startTicks] = [fields[0], Number(fields[1]), Number(fields[2]), Number(fields[19])];
  if (state === undefined || state === "" || !Number.isInteger(ppid) || !Number.isInteger(pgrp) || !Number.isInteger(startTicks)) return null;
  return { state, ppid, pgrp, startTicks, name: text.slice(text.indexOf("(") + 1, close) };
}

/** A process's `/proc/<pid>/stat`; null where it cannot be read (gone, or not Linux). */
export function readProcStat(pid: number): ProcStat | null {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, "utf8"));
  } catch {
    return null;
  }
}
