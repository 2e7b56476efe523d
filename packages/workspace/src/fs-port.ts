import nodeFs from "node:fs";
import * as nodeFsPromises from "node:fs/promises";
import type * as TmpPromise from "tmp-promise";

/**
 * The file-system surface @ocgw/workspace uses. Production code gets {@link nodeFsPort}; fault and
 * permission tests inject memfs (EACCES, ENOSPC, foreign owners) behind the same port.
 */
export interface FsPort {
  readonly promises: FsPromises;
  /** Callback-style fs handed to proper-lockfile for the instance and collector locks. */
  readonly lockFs: LockFs;
  /** `O_*` flags used when opening markers and seed files. */
  readonly constants: Pick<typeof nodeFs.constants, "O_RDONLY" | "O_WRONLY" | "O_CREAT" | "O_EXCL" | "O_NOFOLLOW" | "O_DIRECTORY">;
  /**
   * Atomically creates `<root>/<name>` with mode 0700, failing on any existing entry (a symlink
   * included). The production port does this with tmp-promise, our private root as `tmpdir`.
   */
  createLeaseDir(root: string, name: string): Promise<void>;
}

export type FsPromises = Pick<
  typeof nodeFsPromises,
  "lstat" | "stat" | "mkdir" | "readdir" | "opendir" | "rename" | "rm" | "open" | "chmod" | "realpath" | "unlink" | "rmdir" | "writeFile" | "readFile"
>;

/** What proper-lockfile calls on its `fs` option. */
export type LockFs = Pick<typeof nodeFs, "mkdir" | "stat" | "utimes" | "rmdir" | "realpath" | "lstat">;

let tmpPromise: Promise<typeof TmpPromise> | undefined;

/**
 * tmp-promise, loaded on the first lease and kept, not with this module: at load it takes the
 * realpath of $TMPDIR, which throws when $TMPDIR names a missing directory, and every `ocgw`
 * command (`--version` too) died with that stack trace before it could say anything. A failed
 * load is not kept, so the next lease tries again.
 */
function loadTmpPromise(): Promise<typeof TmpPromise> {
  tmpPromise ??= import("tmp-promise").catch((error: unknown) => {
    tmpPromise = undefined;
    throw error;
  });
  return tmpPromise;
}

export const nodeFsPort: FsPort = {
  promises: nodeFsPromises,
  lockFs: nodeFs,
  constants: nodeFs.constants,
  async createLeaseDir(root, name) {
    // `name` is ours (slug + hash + randomness, never a raw key) and tmp ≥ 0.2.7 confines it to
    // `tmpdir`; `keep` because release and the collector own removal, not tmp's exit hook.
    const { dir } = await loadTmpPromise();
    await dir({ tmpdir: root, name, mode: 0o700, keep: true });
  },
};
