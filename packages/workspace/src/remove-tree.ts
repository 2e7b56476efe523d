import * as path from "node:path";
import { WorkspaceError, errnoCode } from "./errors.ts";
import type { FsPort } from "./fs-port.ts";
import { isDirectChild, randomSuffix } from "./paths.ts";

/** Entries buffered per streamed directory read: memory stays flat however wide a directory is. */
const READ_BATCH = 64;
/**
 * A directory whose `lstat` size is at most this is read in one call instead of streamed (one fs
 * request instead of four). Sizes count bytes of entries on most file systems and entries on some
 * (ZFS), so this is at most ~16,000 entries; a size of 0 (unknown) always streams.
 */
const SMALL_DIRECTORY_BYTES = 16 * 1024;
/** Entries of one directory deleted at once. */
const DELETE_CONCURRENCY = 8;
/** Depth-first walks running at once: at most this × {@link DELETE_CONCURRENCY} deletes are in flight. */
const WALKERS = 4;
/** A directory this many levels below its base (the tree, or a parked directory) is parked, not entered. */
const DEPTH_LIMIT = 32;
/** …and so is one whose path is this many bytes longer than its base's: paths stay far below PATH_MAX. */
const PATH_LIMIT = 1024;
/** A directory still not empty after this many read-and-delete passes (something keeps writing into it) fails the removal. */
const MAX_PASSES = 3;
/** Attempts at a staging name that nothing in the tree already uses. */
const STAGE_ATTEMPTS = 5;

const SEPARATOR = Buffer.from(path.sep);

/** One pass over the tree. */
interface Removal {
  fs: FsPort;
  /** The tree being deleted, which holds the stage. */
  top: Buffer;
  stage: string;
  stageName: Buffer;
  /** Made on the first park, so a tree that needs none (any ordinary one) is deleted without allocating anything. */
  staged: Promise<void> | undefined;
  /** Numbers of the directories parked in the stage (named in base 36), not yet deleted. */
  parked: number[];
  next: number;
  /** Walks running besides the first. */
  forks: number;
}

/** A directory being emptied by a depth-first walk. */
interface Frame {
  dir: Buffer;
  /** Levels below its base. */
  depth: number;
  /** Byte length of its base's path. */
  baseBytes: number;
  entries: AsyncIterator<RawEntry>;
  /** Unlinks and parks in flight, at most {@link DELETE_CONCURRENCY}. */
  deletes: Promise<void>[];
  /** Subdirectories handed to walks of their own. */
  forks: Promise<void>[];
  pass: number;
}

/** What a listing yields: names are bytes (`encoding: "buffer"`), so names that are not UTF-8 survive. */
interface RawEntry {
  name: string | Buffer;
  isDirectory(): boolean;
}

/**
 * Deletes `tree`, a directory that is already ours (a `.trash-*` entry directly inside `root`),
 * in time linear in its entries whatever it holds, and throws the first error that stops it (the
 * caller keeps the trash entry for the collector).
 *
 * - **Iterative, never too deep.** Depth-first walks with explicit stacks, no recursion. A walk
 *   enters directories in place down to {@link DEPTH_LIMIT} levels or {@link PATH_LIMIT} bytes
 *   below its base; a directory deeper than that is renamed ("parked") into a staging directory
 *   made inside `tree` (`<tree>/.ocgw-rm-<random>/<n>`) and walked from there later. Every path
 *   handed to the file system stays around a kilobyte at any depth: no `ENAMETOOLONG`, no rescans
 *   from the top, and nothing ever leaves `tree`.
 * - **Streaming, never blocking.** Large directories are read in batches of {@link READ_BATCH}
 *   entries; entries are deleted {@link DELETE_CONCURRENCY} at a time by up to {@link WALKERS}
 *   walks; every step is an awaited fs call, so memory and the requests in flight stay bounded for
 *   millions of entries, and the event loop turns between steps.
 * - **Nothing is followed.** Links, FIFOs, sockets and devices are unlinked, never opened (only
 *   directories are, `O_NOFOLLOW`); names are read as bytes, so names that are not UTF-8 go too.
 * - **Permissions.** A directory without u+rwx is made 0700 (through an `O_NOFOLLOW` handle, or by
 *   path right after `lstat` says it is a real directory) before it is read or moved.
 */
export async function removeTree(fs: FsPort, root: string, tree: string): Promise<void> {
  if (!isDirectChild(root, tree)) {
    throw new WorkspaceError("WS_OUTSIDE_ROOT", `Refusing to delete "${tree}": it is not directly inside "${root}"`, { path: tree });
  }
  const top = path.resolve(tree);
  for (let pass = 1; ; pass++) {
    const removal = startRemoval(fs, top);
    await walk(removal, removal.top, 0, removal.top.length);
    await walkParked(removal);
    // A stage something wrote into is left for the next pass, where it is an ordinary subdirectory.
    if (removal.staged !== undefined) await removeIfEmpty(fs, removal.stage, 1);
    if (await removeIfEmpty(fs, top, pass)) return;
  }
}

function startRemoval(fs: FsPort, top: string): Removal {
  const removal: Removal = { fs, top: Buffer.from(top), stage: "", stageName: Buffer.alloc(0), staged: undefined, parked: [], next: 0, forks: 0 };
  nameStage(removal);
  return removal;
}

/**
 * Deletes everything below `start`, depth-first in place, and `start` itself unless it is the
 * tree (whose stage must go first). On failure, waits for what is in flight, then throws.
 */
async function walk(removal: Removal, start: Buffer, depth: number, baseBytes: number): Promise<void> {
  const stack: Frame[] = [];
  try {
    await push(stack, openFrame(removal, start, depth, baseBytes, 1));
    for (let frame = stack.at(-1); frame !== undefined; frame = stack.at(-1)) {
      const child = await nextToEnter(removal, frame);
      if (child !== null) {
        await push(stack, openFrame(removal, child, frame.depth + 1, frame.baseBytes, 1));
      } else {
        stack.pop();
        await push(stack, finishFrame(removal, frame));
      }
    }
  } finally {
    await Promise.allSettled(stack.map((frame) => abandon(frame)));
  }
}

async function push(stack: Frame[], frame: Promise<Frame | null>): Promise<void> {
  const opened = await frame;
  if (opened !== null) stack.push(opened);
}

/** The parked directories, one walk each (walks fork inside as usual); walking one may park more. */
async function walkParked(removal: Removal): Promise<void> {
  for (let n = removal.parked.pop(); n !== undefined; n = removal.parked.pop()) {
    const dir = Buffer.from(parkedPath(removal, n));
    await walk(removal, dir, 0, dir.length);
  }
}

/** A frame for `dir` once it is a real directory we may read and write; null when it is gone (or was a link, now unlinked). */
async function openFrame(removal: Removal, dir: Buffer, depth: number, baseBytes: number, pass: number): Promise<Frame | null> {
  const size = await prepareDirectory(removal.fs, dir);
  if (size === null) return null;
  const entries = await listEntries(removal.fs, dir, size);
  return { dir, depth, baseBytes, entries, deletes: [], forks: [], pass };
}

/**
 * Reads on in `frame`: unlinks what is not a directory, parks directories too deep to enter, hands
 * others to a walk of their own while one may start, and returns the next one to enter in this
 * walk (null once the listing is done).
 */
async function nextToEnter(removal: Removal, frame: Frame): Promise<Buffer | null> {
  for (let next = await frame.entries.next(); next.done !== true; next = await frame.entries.next()) {
    const name = Buffer.from(next.value.name);
    if (frame.depth === 0 && frame.dir.equals(removal.top) && name.equals(removal.stageName)) continue;
    const entry = Buffer.concat([frame.dir, SEPARATOR, name]);
    if (!next.value.isDirectory()) await queueDelete(frame, removeEntry(removal, entry));
    else if (frame.depth + 1 >= DEPTH_LIMIT || entry.length - frame.baseBytes > PATH_LIMIT) await queueDelete(frame, park(removal, entry));
    else if (removal.forks < WALKERS - 1) frame.forks.push(fork(removal, entry, frame));
    else {
      await settle(frame.deletes.splice(0));
      return entry;
    }
  }
  return null;
}

async function queueDelete(frame: Frame, deletion: Promise<void>): Promise<void> {
  frame.deletes.push(deletion);
  if (frame.deletes.length >= DELETE_CONCURRENCY) await settle(frame.deletes.splice(0));
}

async function fork(removal: Removal, dir: Buffer, parent: Frame): Promise<void> {
  removal.forks += 1;
  try {
    await walk(removal, dir, parent.depth + 1, parent.baseBytes);
  } finally {
    removal.forks -= 1;
  }
}

/**
 * The listing of `frame` is done: waits for its deletes and forks, then removes the directory
 * (the tree itself is left to its caller). Returns a frame to read it again when it is not empty
 * yet (an entry added meanwhile, or one a file system's listing skipped while we deleted).
 */
async function finishFrame(removal: Removal, frame: Frame): Promise<Frame | null> {
  await settle([...frame.deletes.splice(0), ...frame.forks.splice(0)]);
  if (frame.dir.equals(removal.top) || (await removeIfEmpty(removal.fs, frame.dir, frame.pass))) return null;
  return openFrame(removal, frame.dir, frame.depth, frame.baseBytes, frame.pass + 1);
}

/** After a failure: lets what is in flight settle and closes the listing. */
async function abandon(frame: Frame): Promise<void> {
  await Promise.allSettled([...frame.deletes, ...frame.forks]);
  await frame.entries.return?.();
}

/** `rmdir`: true when the directory is gone, false when it is not empty and another pass may empty it. */
async function removeIfEmpty(fs: FsPort, dir: string | Buffer, pass: number): Promise<boolean> {
  try {
    await fs.promises.rmdir(dir);
    return true;
  } catch (error) {
    const code = errnoCode(error);
    if (code === "ENOENT") return true;
    if ((code === "ENOTEMPTY" || code === "EEXIST") && pass < MAX_PASSES) return false;
    throw error;
  }
}

/**
 * Makes sure `dir` is a real directory we may read, write and search, and returns its `lstat`
 * size. A link or file found in its place is unlinked, never followed (null); a vanished one is
 * null too.
 */
async function prepareDirectory(fs: FsPort, dir: Buffer): Promise<number | null> {
  let st;
  try {
    st = await fs.promises.lstat(dir);
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return null;
    throw error;
  }
  if (!st.isDirectory()) {
    await unlinkIfPresent(fs, dir);
    return null;
  }
  if ((st.mode & 0o700) !== 0o700) await makeOwnerRwx(fs, dir);
  return st.size;
}

/** chmod 0700 a directory `lstat` has just seen as a real one: by no-follow handle, or by path when it cannot be opened (0000). */
async function makeOwnerRwx(fs: FsPort, dir: Buffer): Promise<void> {
  const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW } = fs.constants;
  let handle;
  try {
    handle = await fs.promises.open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  } catch {
    await fs.promises.chmod(dir, 0o700);
    return;
  }
  try {
    await handle.chmod(0o700);
  } finally {
    await handle.close();
  }
}

/** A small directory is read in one call; any other streams in batches, so memory stays flat however wide it is. */
async function listEntries(fs: FsPort, dir: Buffer, size: number): Promise<AsyncIterator<RawEntry>> {
  if (size > 0 && size <= SMALL_DIRECTORY_BYTES) {
    const all = await fs.promises.readdir(dir, { withFileTypes: true, encoding: "buffer" });
    return (async function* (): AsyncGenerator<RawEntry> {
      yield* all;
    })();
  }
  // Node's opendir takes "buffer" like readdir does, though its types only list string encodings.
  const listing = await fs.promises.opendir(dir, { encoding: "buffer" as BufferEncoding, bufferSize: READ_BATCH });
  return listing[Symbol.asyncIterator]();
}

/** Waits for every promise, then throws the first failure: nothing is still running when an error escapes. */
async function settle(batch: Promise<void>[]): Promise<void> {
  const results = await Promise.allSettled(batch);
  const failure = results.find((result) => result.status === "rejected");
  if (failure !== undefined) throw failure.reason;
}

async function removeEntry(removal: Removal, entry: Buffer): Promise<void> {
  try {
    await removal.fs.promises.unlink(entry);
  } catch (error) {
    const code = errnoCode(error);
    if (code === "ENOENT") return;
    // A directory whose type the listing did not report (EISDIR on Linux, EPERM elsewhere): parked, walked later.
    if ((code === "EISDIR" || code === "EPERM") && (await isRealDirectory(removal.fs, entry))) return park(removal, entry);
    throw error;
  }
}

function nameStage(removal: Removal): void {
  const name = `.ocgw-rm-${randomSuffix(10)}`;
  removal.stage = path.join(removal.top.toString(), name);
  removal.stageName = Buffer.from(name);
}

function parkedPath(removal: Removal, n: number): string {
  return path.join(removal.stage, n.toString(36));
}

/**
 * Moves a directory into the stage, to be walked later from a short path. Moving a directory to
 * another parent needs write permission on it (its `..` changes): a 0500 or 0000 one is made 0700
 * and moved again.
 */
async function park(removal: Removal, dir: Buffer): Promise<void> {
  await ensureStage(removal);
  const n = removal.next++;
  const to = parkedPath(removal, n);
  try {
    await removal.fs.promises.rename(dir, to);
  } catch (error) {
    const code = errnoCode(error);
    if (code === "ENOENT") return;
    if (!(code === "EACCES" || code === "EPERM")) throw error;
    if ((await prepareDirectory(removal.fs, dir)) === null) return;
    await removal.fs.promises.rename(dir, to);
  }
  removal.parked.push(n);
}

/** Makes the stage, once per pass. */
function ensureStage(removal: Removal): Promise<void> {
  removal.staged ??= makeStage(removal);
  return removal.staged;
}

/** `mkdir` fails on any existing entry, so every name inside the stage is ours. */
async function makeStage(removal: Removal): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await removal.fs.promises.mkdir(removal.stage, { mode: 0o700 });
      return;
    } catch (error) {
      if (errnoCode(error) !== "EEXIST" || attempt >= STAGE_ATTEMPTS) throw error;
      nameStage(removal);
    }
  }
}

async function isRealDirectory(fs: FsPort, entry: Buffer): Promise<boolean> {
  const st = await fs.promises.lstat(entry).catch(() => null);
  return st !== null && st.isDirectory();
}

async function unlinkIfPresent(fs: FsPort, entry: Buffer): Promise<void> {
  try {
    await fs.promises.unlink(entry);
  } catch (error) {
    if (errnoCode(error) !== "ENOENT") throw error;
  }
}
