/**
 * Fault suite 3: the real `ocgw gateway run` as an unprivileged user (uid/gid 65534), with TMPDIR
 * inside the test's directory, against a default ephemeral root it must not use:
 * (a) `<TMPDIR>/openclaw-65534` already exists and belongs to root (0700 or 0755): the gateway
 *     refuses to start with one clear line naming the root and its foreign owner, and writes
 *     nothing into it (nor anywhere else under TMPDIR);
 * (b) TMPDIR is read-only (0555, root's): it cannot create the root, says so, and writes nothing.
 * Needs root (to plant root-owned directories and to spawn as 65534); skipped with a printed reason otherwise.
 */
import { chmod, chown, mkdir, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { withTimeout } from "../protocol/helpers.ts";
import { makeDirs } from "../gateway/lifecycle-harness.ts";
import { NOBODY, nobodyCannotRun } from "../../../workspace/test/helpers.ts";
import { snapshotTree, spawnNode } from "./fault-helpers.ts";

const REPO_ROOT = fileURLToPath(new URL("../../../../", import.meta.url));
const BIN = path.join(REPO_ROOT, "packages", "cli", "src", "bin.ts");

function skipReason(): string | null {
  if (process.getuid?.() !== 0) return "not running as root: cannot plant root-owned directories or spawn the gateway as uid 65534";
  return nobodyCannotRun(BIN);
}

const reason = skipReason();
if (reason !== null) console.log(`non-root-user.test.ts skipped: ${reason}`);

interface Setup {
  readonly tmp: string;
  readonly stateDir: string;
  readonly home: string;
  /** The default root the gateway computes: `<TMPDIR>/openclaw-65534`. */
  readonly root: string;
}

/** A test dir 65534 can traverse, with a state dir and HOME of its own and a root-owned TMPDIR. */
async function setup(tmpMode: number): Promise<Setup> {
  const dirs = await makeDirs();
  await chmod(dirs.base, 0o755);
  const stateDir = path.join(dirs.base, "state");
  const home = path.join(dirs.base, "home");
  const tmp = path.join(dirs.base, "tmp");
  for (const dir of [stateDir, home]) {
    await mkdir(dir, { mode: 0o700 });
    await chown(dir, NOBODY, NOBODY);
  }
  await mkdir(tmp);
  await chmod(tmp, tmpMode);
  return { tmp, stateDir, home, root: path.join(tmp, `openclaw-${NOBODY}`) };
}

/** `node packages/cli/src/bin.ts gateway run --port 0 --state-dir <dir>` as 65534; killed by pid if it outlives the test. */
async function gatewayRunAsNobody(s: Setup): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const child = spawnNode([BIN, "gateway", "run", "--port", "0", "--state-dir", s.stateDir], {
    cwd: REPO_ROOT,
    uid: NOBODY,
    gid: NOBODY,
    env: { PATH: process.env["PATH"], HOME: s.home, TMPDIR: s.tmp },
  });
  const { code } = await withTimeout(child.exited, "ocgw gateway run (as 65534) to exit", 20_000);
  return { code, stdout: child.stdout(), stderr: child.stderr() };
}

describe.skipIf(reason !== null)("ocgw gateway run as a non-root user (uid 65534)", () => {
  it.each([
    { mode: 0o700, octal: "0700" },
    { mode: 0o755, octal: "0755" },
  ])("refuses a default root that root pre-created with mode $octal, writing nothing into it", async ({ mode }) => {
    const s = await setup(0o1777);
    await mkdir(s.root);
    await chmod(s.root, mode);
    await writeFile(path.join(s.root, "planted-by-root.txt"), "not yours\n");
    const before = await snapshotTree(s.tmp);

    const result = await gatewayRunAsNobody(s);

    expect(result.code).not.toBe(0);
    expect(result.code).not.toBeNull();
    expect(result.stdout).toBe("");
    const lines = result.stderr.split("\n").filter((line) => line !== "");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`The ephemeral root "${s.root}" is owned by uid 0, not by this user (uid ${NOBODY})`);
    expect(lines[0]).toMatch(/^ocgw: /);
    expect(await snapshotTree(s.tmp)).toEqual(before);
  });

  it("says a read-only TMPDIR cannot hold the root, and writes nothing under it", async () => {
    const s = await setup(0o555);
    const before = await snapshotTree(s.tmp);
    expect(before).toHaveLength(1);

    const result = await gatewayRunAsNobody(s);

    expect(result.code).not.toBe(0);
    expect(result.code).not.toBeNull();
    expect(result.stdout).toBe("");
    const lines = result.stderr.split("\n").filter((line) => line !== "");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`Cannot create the ephemeral root "${s.root}" (EACCES)`);
    expect(await snapshotTree(s.tmp)).toEqual(before);
  });
});
