import { lstat, readFile, readdir } from "node:fs/promises";
import * as path from "node:path";
import { type DirIdentity, currentUid, errnoCode } from "@ocgw/workspace";

/** One entry of a plain directory tree, by its path relative to the tree's root (`/`-separated). */
export interface TreeEntry {
  readonly rel: string;
  readonly kind: "file" | "dir";
  readonly size: number;
}

/** A directory tree that holds nothing but real directories and regular files of ours, on one file system. */
export interface PlainTree {
  readonly entries: readonly TreeEntry[];
  readonly bytes: number;
  /** The newest mtime or ctime of the root and of anything below it (ms). */
  readonly newestChangeMs: number;
  readonly identity: DirIdentity;
}

/** Why a tree is not plain: it is never a candidate. */
export interface NotPlain {
  readonly code: "not-plain";
  readonly detail: string;
}

export interface WalkOptions {
  /** Mount points on this host (absolute paths): a tree holding one is never plain. */
  readonly mounts: ReadonlySet<string>;
  /** Default: this process's uid (`null` on Windows: no owner check). */
  readonly uid?: number | null | undefined;
  /** A tree with more entries is not proven (hostile or just huge). Default 20,000. */
  readonly maxEntries?: number | undefined;
  /** A tree deeper than this is not proven. Default 32. */
  readonly maxDepth?: number | undefined;
}

function notPlain(detail: string): NotPlain {
  return { code: "not-plain", detail };
}

/** Why one lstat result is not part of a plain tree, or undefined. */
function whyNotPlain(st: { isSymbolicLink(): boolean; isDirectory(): boolean; isFile(): boolean; uid: number; dev: number }, rel: string, uid: number | null, dev: number): string | undefined {
  const where = rel === "" ? "it" : rel;
  if (st.isSymbolicLink()) return rel === "" ? "a symlink: never followed or removed" : `holds a symlink (${rel}): never followed or removed`;
  if (!st.isDirectory() && !st.isFile()) return rel === "" ? "not a directory" : `holds a special file (${rel})`;
  if (uid !== null && st.uid !== uid) return `${where} is owned by another user (uid ${st.uid})`;
  if (st.dev !== dev) return `${where} is on another file system (a mount point)`;
  return undefined;
}

/**
 * Walks `dir` without following a link, and proves it a plain tree: only real directories and
 * regular files, all owned by `uid`, none a mount point, within the size limits. Anything else
 * comes back as the reason it is not plain.
 */
export async function walkPlainTree(dir: string, options: WalkOptions): Promise<PlainTree | NotPlain> {
  const uid = options.uid === undefined ? (currentUid() ?? null) : options.uid;
  const maxEntries = options.maxEntries ?? 20_000;
  const maxDepth = options.maxDepth ?? 32;
  const top = await lstat(dir, { bigint: true });
  if (top.isSymbolicLink()) return notPlain("a symlink: never followed or removed");
  if (!top.isDirectory()) return notPlain("not a directory");
  const dev = Number(top.dev);
  const entries: TreeEntry[] = [];
  let bytes = 0;
  let newest = Math.max(Number(top.mtimeMs), Number(top.ctimeMs));
  const stack: { rel: string; depth: number }[] = [{ rel: "", depth: 0 }];
  while (stack.length > 0) {
    const { rel, depth } = stack.pop() as { rel: string; depth: number };
    const full = rel === "" ? dir : path.join(dir, rel);
    if (options.mounts.has(full)) return notPlain(`${rel === "" ? "it" : rel} is a mount point`);
    const st = await lstat(full);
    const why = whyNotPlain(st, rel, uid, dev);
    if (why !== undefined) return notPlain(why);
    newest = Math.max(newest, st.mtimeMs, st.ctimeMs);
    if (rel !== "") entries.push({ rel, kind: st.isDirectory() ? "dir" : "file", size: st.isFile() ? st.size : 0 });
    if (st.isFile()) bytes += st.size;
    if (entries.length > maxEntries) return notPlain(`holds more than ${maxEntries} entries: too many to prove`);
    if (!st.isDirectory()) continue;
    if (depth >= maxDepth) return notPlain(`nested deeper than ${maxDepth} levels: too deep to prove`);
    for (const name of (await readdir(full)).sort()) stack.push({ rel: rel === "" ? name : `${rel}/${name}`, depth: depth + 1 });
  }
  return { entries, bytes, newestChangeMs: newest, identity: { dev: top.dev.toString(), ino: top.ino.toString() } };
}

/** Unescapes a mountinfo path field (`\040` for a space, and so on). */
function unescapeMount(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(Number.parseInt(octal, 8)));
}

/** The mount points of this host (Linux: /proc/self/mountinfo); empty where that is not readable. */
export async function readMountPoints(file = "/proc/self/mountinfo"): Promise<Set<string>> {
  try {
    const text = await readFile(file, "utf8");
    const mounts = new Set<string>();
    for (const line of text.split("\n")) {
      const field = line.split(" ")[4];
      if (field !== undefined && field !== "") mounts.add(unescapeMount(field));
    }
    return mounts;
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return new Set();
    throw error;
  }
}
