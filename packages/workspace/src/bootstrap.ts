import * as path from "node:path";
import { errnoCode } from "./errors.ts";
import type { FsPort } from "./fs-port.ts";
import { MARKER_NAME } from "./marker.ts";

/**
 * Our own concise bootstrap templates, written into brand-new workspaces only. Same file names as
 * upstream, so agents that look for them find them.
 */
export const BOOTSTRAP_FILES: Readonly<Record<string, string>> = {
  "AGENTS.md": "# AGENTS.md\n\nThis directory is your workspace. Read SOUL.md, USER.md and TOOLS.md before you start.\nKeep notes you need later in files here; nothing else is remembered between sessions.\n",
  "SOUL.md": "# SOUL.md\n\nBe helpful, direct and honest. Say what you did and what you did not do.\nAsk before anything destructive or irreversible.\n",
  "TOOLS.md": "# TOOLS.md\n\nNotes about the tools and environment available here (commands, hosts, conventions).\n",
  "IDENTITY.md": "# IDENTITY.md\n\n- Name:\n- Nature:\n- Tone:\n",
  "USER.md": "# USER.md\n\nWhat you know about the person you work with: name, preferences, time zone.\n",
  "HEARTBEAT.md": "# HEARTBEAT.md\n\nTasks to check on periodically. Empty means nothing to do.\n",
  "BOOTSTRAP.md": "# BOOTSTRAP.md\n\nFirst run: agree on a name and tone with the user, fill in IDENTITY.md and USER.md, then delete this file.\n",
};

/**
 * Writes each template with O_CREAT|O_EXCL: an existing file (or a planted link) is never
 * overwritten or followed. Returns the names written.
 */
export async function seedBootstrap(fs: FsPort, dir: string, files: Readonly<Record<string, string>> = BOOTSTRAP_FILES): Promise<string[]> {
  const written: string[] = [];
  for (const [name, content] of Object.entries(files)) {
    try {
      await fs.promises.writeFile(path.join(dir, name), content, { flag: "wx", mode: 0o644 });
      written.push(name);
    } catch (error) {
      if (errnoCode(error) !== "EEXIST") throw error;
    }
  }
  return written;
}

/** Limits of a seed copy: top-level regular files only. */
export const SEED_MAX_FILES = 64;
export const SEED_MAX_FILE_BYTES = 1024 * 1024; // 1 MiB

/**
 * Copies the top-level regular files of `source` (an agent's workspace) into `dest`. A symlink,
 * directory or special file in the source is skipped, and each file is opened with O_NOFOLLOW
 * and checked again after opening, so a link swapped in is never followed. Files over 1 MiB and
 * files past the 64th are skipped. Returns the names copied.
 */
export async function seedFromDirectory(fs: FsPort, source: string, dest: string): Promise<string[]> {
  const { O_RDONLY, O_NOFOLLOW, O_WRONLY, O_CREAT, O_EXCL } = fs.constants;
  const entries = await fs.promises.readdir(source, { withFileTypes: true });
  const copied: string[] = [];
  for (const entry of entries) {
    if (copied.length >= SEED_MAX_FILES) break;
    if (!entry.isFile() || entry.name === MARKER_NAME) continue;
    let input;
    try {
      input = await fs.promises.open(path.join(source, entry.name), O_RDONLY | O_NOFOLLOW);
    } catch (error) {
      const code = errnoCode(error);
      if (code === "ELOOP" || code === "ENOENT") continue;
      throw error;
    }
    try {
      const st = await input.stat();
      if (!st.isFile() || st.size > SEED_MAX_FILE_BYTES) continue;
      const content = await input.readFile();
      const output = await fs.promises.open(path.join(dest, entry.name), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, 0o644);
      try {
        await output.writeFile(content);
      } finally {
        await output.close();
      }
      copied.push(entry.name);
    } finally {
      await input.close();
    }
  }
  return copied;
}
