import * as path from "node:path";
import { WorkspaceError, describeError, errnoCode } from "./errors.ts";
import type { FsPort } from "./fs-port.ts";
import { TRASH_PREFIX, isDirectChild, randomSuffix } from "./paths.ts";
import { removeTree } from "./remove-tree.ts";
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
    await removeTree(fs, root, trashPath);
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
