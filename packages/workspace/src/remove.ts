import * as path from "node:path";
import { WorkspaceError, describeError, errnoCode } from "./errors.ts";
import type { FsPort } from "./fs-port.ts";
import { TRASH_PREFIX, isDirectChild, randomSuffix } from "./paths.ts";
import type { DirIdentity } from "./types.ts";

export interface SafeRemoveOptions {
  fs: FsPort;
  /** The provider's root; `target` must be a direct child of it. */
  root: string;
  target: string;
  /** When set, the directory must still be this one (device and inode) or removal is refused. */
  identity?: DirIdentity | undefined;
  /** Goes into the trash name (`.trash-<tag>-<random>`) so the collector knows whose it is. */
  trashTag: string;
  /** Called with the trash path before deletion starts, and after it ends (`done`). */
  onTrash?: ((trashPath: string, done: boolean) => void) | undefined;
}

export type SafeRemoveResult =
  | { outcome: "removed" | "gone" }
  | { outcome: "refused"; error: WorkspaceError }
  | { outcome: "failed"; error: WorkspaceError }
  | { outcome: "trashed"; trashPath: string; error: WorkspaceError };

/**
 * Removes one workspace directory without ever following a link or leaving the root:
 * lstat and identity check, rename to `.trash-*` inside the root (frees the name at once, and a
 * crash mid-delete leaves an obvious garbage entry), then delete the trash entry. Never throws:
 * refusals and failures come back as outcomes.
 */
export async function safeRemove(options: SafeRemoveOptions): Promise<SafeRemoveResult> {
  const { fs, root, target, identity } = options;
  if (!isDirectChild(root, target)) {
    return {
      outcome: "refused",
      error: new WorkspaceError("WS_OUTSIDE_ROOT", `Refusing to remove "${target}": it is not directly inside "${root}"`, { path: target }),
    };
  }
  const check = await checkIdentity(fs, target, identity);
  if (check !== "ok") return check;

  const trashPath = path.join(root, `${TRASH_PREFIX}${options.trashTag}-${randomSuffix(10)}`);
  try {
    await fs.promises.rename(target, trashPath);
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return { outcome: "gone" };
    return {
      outcome: "failed",
      error: new WorkspaceError("WS_REMOVE_FAILED", `Cannot move "${target}" aside for removal (${errnoCode(error) ?? describeError(error)})`, {
        cause: error,
        path: target,
      }),
    };
  }
  // The rename moved whatever was at `target` a moment after the check; make sure it was ours.
  const moved = await checkIdentity(fs, trashPath, identity);
  if (moved !== "ok") {
    await fs.promises.rename(trashPath, target).catch(() => undefined);
    return moved.outcome === "gone" ? { outcome: "gone" } : moved;
  }
  options.onTrash?.(trashPath, false);
  try {
    await removeTree(fs, root, trashPath, options.trashTag);
    return { outcome: "removed" };
  } catch (error) {
    return {
      outcome: "trashed",
      trashPath,
      error: new WorkspaceError("WS_REMOVE_FAILED", `"${target}" was moved to "${trashPath}" but could not be deleted (${errnoCode(error) ?? describeError(error)})`, {
        cause: error,
        path: trashPath,
      }),
    };
  } finally {
    options.onTrash?.(trashPath, true);
  }
}

async function checkIdentity(
  fs: FsPort,
  target: string,
  identity: DirIdentity | undefined,
): Promise<"ok" | { outcome: "gone" } | { outcome: "refused"; error: WorkspaceError } | { outcome: "failed"; error: WorkspaceError }> {
  let st;
  try {
    st = await fs.promises.lstat(target, { bigint: true });
  } catch (error) {
    if (errnoCode(error) === "ENOENT") return { outcome: "gone" };
    return {
      outcome: "failed",
      error: new WorkspaceError("WS_REMOVE_FAILED", `Cannot inspect "${target}" (${errnoCode(error) ?? describeError(error)})`, { cause: error, path: target }),
    };
  }
  if (st.isSymbolicLink() || !st.isDirectory()) {
    return {
      outcome: "refused",
      error: new WorkspaceError("WS_IDENTITY_CHANGED", `Refusing to remove "${target}": it is ${st.isSymbolicLink() ? "a symlink" : "not a directory"} now`, {
        path: target,
      }),
    };
  }
  if (identity !== undefined && (st.dev.toString() !== identity.dev || st.ino.toString() !== identity.ino)) {
    return {
      outcome: "refused",
      error: new WorkspaceError(
        "WS_IDENTITY_CHANGED",
        `Refusing to remove "${target}": it is device ${st.dev}/inode ${st.ino}, not the ${identity.dev}/${identity.ino} that was created`,
        { path: target },
      ),
    };
  }
  return "ok";
}

/** Below this many levels (or this many path bytes) fs.rm is known to cope. */
const CHUNK_DEPTH = 256;
const CHUNK_PATH_BYTES = 2048;

/**
 * Deletes a tree that is already ours (a trash entry). `fs.rm` removes links, never their
 * targets; when a tree is too deep for it (ENAMETOOLONG past 4,096 path bytes, stack overflow
 * near depth 2,000), the part below {@link CHUNK_DEPTH} levels is renamed to a new trash entry at
 * the root, which shortens every path, and each piece is deleted in turn. When permissions inside
 * stop the delete (a 0555 directory as non-root), directories are made writable through
 * no-follow handles and the delete is tried once more.
 */
export async function removeTree(fs: FsPort, root: string, tree: string, trashTag: string): Promise<void> {
  const pending = [tree];
  let permissionFixed = false;
  while (pending.length > 0) {
    const current = pending.pop() as string;
    try {
      await fs.promises.rm(current, { recursive: true, force: true, maxRetries: 2, retryDelay: 20 });
      continue;
    } catch (error) {
      const code = errnoCode(error);
      if ((code === "EACCES" || code === "EPERM") && !permissionFixed) {
        permissionFixed = true;
        await makeWritable(fs, current);
        pending.push(current);
        continue;
      }
      if (!(code === "ENAMETOOLONG" || error instanceof RangeError)) throw error;
      const deep = await findDeepDirectory(fs, current);
      if (deep === null) throw error;
      const hoisted = path.join(root, `${TRASH_PREFIX}${trashTag}-${randomSuffix(10)}`);
      await fs.promises.rename(deep, hoisted);
      pending.push(current, hoisted);
    }
  }
}

/** The first directory at least CHUNK_DEPTH levels (or CHUNK_PATH_BYTES bytes) below `top`, depth-first, links never followed. */
async function findDeepDirectory(fs: FsPort, top: string): Promise<string | null> {
  const stack: { dir: string; depth: number }[] = [{ dir: top, depth: 0 }];
  while (stack.length > 0) {
    const { dir, depth } = stack.pop() as { dir: string; depth: number };
    if (depth >= CHUNK_DEPTH || Buffer.byteLength(dir) - Buffer.byteLength(top) >= CHUNK_PATH_BYTES) return dir;
    let entries;
    try {
      entries = await fs.promises.readdir(dir, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const entry of entries) {
      if (entry.isDirectory() && !entry.isSymbolicLink()) stack.push({ dir: path.join(dir, entry.name), depth: depth + 1 });
    }
  }
  return null;
}

/** u+rwx on every real directory of a tree that is ours; links are never followed or changed. */
async function makeWritable(fs: FsPort, top: string): Promise<void> {
  const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW } = fs.constants;
  const stack = [top];
  while (stack.length > 0) {
    const dir = stack.pop() as string;
    try {
      try {
        const handle = await fs.promises.open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        try {
          await handle.chmod(0o700);
        } finally {
          await handle.close();
        }
      } catch {
        // A 0000 directory cannot be opened; chmod by path, only right after lstat says it is a real directory.
        const st = await fs.promises.lstat(dir);
        if (!st.isDirectory() || st.isSymbolicLink()) continue;
        await fs.promises.chmod(dir, 0o700);
      }
      const entries = await fs.promises.readdir(dir, { withFileTypes: true });
      for (const entry of entries) {
        if (entry.isDirectory() && !entry.isSymbolicLink()) stack.push(path.join(dir, entry.name));
      }
    } catch {
      // Best effort: whatever stays undeletable is reported by the caller.
    }
  }
}
