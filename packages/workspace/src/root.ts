import { realpathSync } from "node:fs";
import { tmpdir, userInfo } from "node:os";
import * as path from "node:path";
import { WorkspaceError, describeError, errnoCode } from "./errors.ts";
import type { FsPort } from "./fs-port.ts";
import type { DirIdentity } from "./types.ts";

/** What to do with a root that is ours but open to group/other. */
export type LooseRootPolicy = "tighten" | "refuse";

/** This process's uid, or undefined where the platform has none (Windows). */
export function currentUid(): number | undefined {
  return typeof process.getuid === "function" ? process.getuid() : undefined;
}

/**
 * `<os.tmpdir()>/openclaw-<uid>`, with the temp dir's real path (macOS `/var` → `/private/var`).
 * Refuses a relative or missing TMPDIR rather than writing into the working directory.
 */
export function defaultEphemeralRoot(): string {
  const base = tmpdir();
  if (!path.isAbsolute(base)) {
    throw new WorkspaceError("WS_ROOT_UNAVAILABLE", `The OS temp directory "${base}" is not an absolute path`, {
      fix: "Set TMPDIR to an absolute, writable directory, or set workspace.ephemeral.root",
    });
  }
  let real: string;
  try {
    real = realpathSync(base);
  } catch (error) {
    throw new WorkspaceError("WS_ROOT_UNAVAILABLE", `The OS temp directory "${base}" cannot be resolved (${describeError(error)})`, {
      cause: error,
      path: base,
      fix: "Set TMPDIR to an existing, writable directory, or set workspace.ephemeral.root",
    });
  }
  const uid = currentUid();
  return path.join(real, `openclaw-${uid ?? userInfo().username}`);
}

/**
 * Makes sure `root` is a private directory of this user and returns its identity. Creates it with
 * mode 0700 when missing. Checks with lstat: a symlink, a non-directory, a foreign owner are
 * refused and never written into; a root of ours with group/other bits is tightened through a
 * no-follow handle (or refused, per `loose`).
 */
export async function ensurePrivateRoot(fs: FsPort, root: string, loose: LooseRootPolicy = "tighten"): Promise<DirIdentity> {
  if (!path.isAbsolute(root)) {
    throw new WorkspaceError("WS_INVALID_OPTIONS", `The ephemeral root "${root}" is not an absolute path`, { path: root });
  }
  try {
    await fs.promises.mkdir(path.dirname(root), { recursive: true });
    await fs.promises.mkdir(root, { mode: 0o700 });
  } catch (error) {
    const code = errnoCode(error);
    if (code !== "EEXIST") {
      throw new WorkspaceError("WS_ROOT_UNAVAILABLE", `Cannot create the ephemeral root "${root}" (${code ?? describeError(error)})`, {
        cause: error,
        path: root,
      });
    }
  }
  return verifyPrivateRoot(fs, root, loose);
}

/** The checks of {@link ensurePrivateRoot} without creating anything. */
export async function verifyPrivateRoot(fs: FsPort, root: string, loose: LooseRootPolicy = "refuse"): Promise<DirIdentity> {
  let st;
  try {
    st = await fs.promises.lstat(root, { bigint: true });
  } catch (error) {
    throw new WorkspaceError("WS_ROOT_UNAVAILABLE", `Cannot inspect the ephemeral root "${root}" (${errnoCode(error) ?? describeError(error)})`, {
      cause: error,
      path: root,
    });
  }
  if (st.isSymbolicLink()) {
    throw new WorkspaceError("WS_ROOT_UNSAFE", `The ephemeral root "${root}" is a symlink`, { path: root });
  }
  if (!st.isDirectory()) {
    throw new WorkspaceError("WS_ROOT_UNSAFE", `The ephemeral root "${root}" is not a directory`, { path: root });
  }
  const uid = currentUid();
  if (uid !== undefined && st.uid !== BigInt(uid)) {
    throw new WorkspaceError("WS_ROOT_UNSAFE", `The ephemeral root "${root}" is owned by uid ${st.uid}, not by this user (uid ${uid})`, {
      path: root,
    });
  }
  const identity = { dev: st.dev.toString(), ino: st.ino.toString() };
  if (uid !== undefined && (Number(st.mode) & 0o077) !== 0) {
    const mode = (Number(st.mode) & 0o777).toString(8).padStart(4, "0");
    if (loose === "refuse") {
      throw new WorkspaceError("WS_ROOT_UNSAFE", `The ephemeral root "${root}" has mode ${mode}; group and other must have no access`, {
        path: root,
        fix: `Run chmod 700 "${root}", or point workspace.ephemeral.root elsewhere`,
      });
    }
    await tighten(fs, root, identity, mode);
  }
  return identity;
}

async function tighten(fs: FsPort, root: string, identity: DirIdentity, mode: string): Promise<void> {
  const { O_RDONLY, O_DIRECTORY, O_NOFOLLOW } = fs.constants;
  try {
    const handle = await fs.promises.open(root, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
    try {
      const st = await handle.stat({ bigint: true });
      if (st.dev.toString() !== identity.dev || st.ino.toString() !== identity.ino) {
        throw new Error("the directory was replaced while it was being checked");
      }
      await handle.chmod(0o700);
    } finally {
      await handle.close();
    }
    const after = await fs.promises.lstat(root, { bigint: true });
    if ((Number(after.mode) & 0o077) !== 0) throw new Error(`mode is still ${(Number(after.mode) & 0o777).toString(8)}`);
  } catch (error) {
    throw new WorkspaceError("WS_ROOT_UNSAFE", `The ephemeral root "${root}" has mode ${mode} and could not be tightened to 0700 (${describeError(error)})`, {
      cause: error,
      path: root,
    });
  }
}
