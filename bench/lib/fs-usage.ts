/** Disk usage of directory trees, walked with lstat (links are counted, never followed). */
import { lstat, readdir } from "node:fs/promises";
import * as path from "node:path";
import { errnoCode } from "../../packages/workspace/src/index.ts";

export interface Usage {
  /** Sum of the apparent sizes of every non-directory entry. */
  bytes: number;
  /** Allocated bytes (st_blocks × 512) of every entry, directories included: what `du` counts. */
  allocated: number;
  /** Non-directory entries. */
  files: number;
  /** Directories below the top. */
  dirs: number;
}

export const emptyUsage = (): Usage => ({ bytes: 0, allocated: 0, files: 0, dirs: 0 });

/** Usage of the trees below `tops` (missing tops count as empty). Bounded by `maxEntries`. */
export async function diskUsage(tops: readonly string[], maxEntries = 2_000_000): Promise<Usage> {
  const usage = emptyUsage();
  const stack: string[] = [];
  for (const top of tops) {
    try {
      const st = await lstat(top);
      usage.allocated += st.blocks * 512;
      if (st.isDirectory()) stack.push(top);
    } catch (error) {
      if (errnoCode(error) !== "ENOENT") throw error;
    }
  }
  let seen = 0;
  while (stack.length > 0 && seen < maxEntries) {
    const dir = stack.pop() as string;
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      seen += 1;
      const full = path.join(dir, entry.name);
      const st = await lstat(full);
      usage.allocated += st.blocks * 512;
      if (entry.isDirectory()) {
        usage.dirs += 1;
        stack.push(full);
      } else {
        usage.files += 1;
        usage.bytes += st.size;
      }
    }
  }
  return usage;
}

/** Top-level entries of an ephemeral root, split into lease directories, trash and bookkeeping. */
export async function rootEntries(root: string): Promise<{ leases: number; trash: number; bookkeeping: string[]; other: string[] }> {
  let names: string[];
  try {
    names = await readdir(root);
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return { leases: 0, trash: 0, bookkeeping: [], other: [] };
    throw error;
  }
  let leases = 0;
  let trash = 0;
  const bookkeeping: string[] = [];
  const other: string[] = [];
  for (const name of names) {
    if (name.startsWith(".trash-")) trash += 1;
    else if (name === ".instances" || name.startsWith(".collector.lock")) bookkeeping.push(name);
    else if (/^[a-z0-9_-]+-[0-9a-f]{12}-[a-z0-9]{12}$/.test(name)) leases += 1;
    else other.push(name);
  }
  return { leases, trash, bookkeeping, other };
}
