import { existsSync } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import * as path from "node:path";
import { defaultEphemeralRoot, isWorkspaceError } from "@ocgw/workspace";
import { type ResolvedConfig, loadConfig } from "../config/index.ts";
import { type Store, openStore } from "../store/index.ts";

/** Where offline operator commands find the gateway's state: `--state-dir`, `--config`, the environment. */
export interface OfflineOptions {
  /** `--state-dir`: beats OCGW_STATE_DIR and the file. */
  stateDir?: string | undefined;
  /** `--config`: the config file to read (must exist). */
  configPath?: string | undefined;
  /** Default: `process.env`. */
  env?: NodeJS.ProcessEnv | undefined;
  /** Base of relative paths. Default: `process.cwd()`. */
  cwd?: string | undefined;
}

/** What offline commands need of the configuration. */
export interface OfflineTarget {
  readonly config: ResolvedConfig;
  readonly stateDir: string;
  /** The ephemeral root: `workspace.ephemeral.root`, else `<os.tmpdir()>/openclaw-<uid>`. */
  readonly root: string;
  /** `<stateDir>/ocgw.sqlite`. */
  readonly storePath: string;
  readonly staleMs: number;
}

/** The database file of a state directory. */
export const STORE_FILE = "ocgw.sqlite";

/** Loads the configuration as `ocgw gateway run` would (flags > env > file > defaults). */
export async function loadOfflineTarget(options: OfflineOptions = {}): Promise<OfflineTarget> {
  const config = await loadConfig({
    env: options.env,
    cwd: options.cwd,
    flags: { stateDir: options.stateDir, configPath: options.configPath },
  });
  return {
    config,
    stateDir: config.stateDir,
    root: path.resolve(config.workspace.ephemeral.root ?? defaultEphemeralRoot()),
    storePath: path.join(config.stateDir, STORE_FILE),
    staleMs: config.workspace.ephemeral.staleMs,
  };
}

/**
 * Opens the ledger when the state directory has one; `undefined` when it has none yet (an offline
 * command never creates a state directory or a database).
 */
export function openExistingStore(storePath: string): Store | undefined {
  if (!existsSync(storePath)) return undefined;
  return openStore({ path: storePath });
}

/**
 * The bytes below `dir`: regular files' sizes plus symlinks' own sizes, links never followed,
 * directories themselves not counted. Entries that vanish or cannot be read count as 0.
 * `null` when `dir` itself is not a real directory.
 */
export async function directorySize(dir: string): Promise<number | null> {
  try {
    const st = await lstat(dir);
    if (!st.isDirectory()) return null;
  } catch {
    return null;
  }
  let total = 0;
  const stack = [dir];
  while (stack.length > 0) {
    const current = stack.pop() as string;
    let entries;
    try {
      entries = await readdir(current, { withFileTypes: true });
    } catch {
      continue;
    }
    for (const entry of entries) {
      const full = path.join(current, entry.name);
      if (entry.isDirectory()) {
        stack.push(full);
        continue;
      }
      try {
        const st = await lstat(full);
        if (st.isFile() || st.isSymbolicLink()) total += st.size;
      } catch {
        // Gone meanwhile.
      }
    }
  }
  return total;
}

/** When an entry came to be: birth time where the file system records it, else mtime; `null` when it cannot be read. */
export async function createdAtOf(target: string): Promise<number | null> {
  try {
    const st = await lstat(target);
    return st.birthtimeMs > 0 ? st.birthtimeMs : st.mtimeMs;
  } catch {
    return null;
  }
}

/** Retries `fn` while another collector holds the root's lock (WS_GC_BUSY), a few times. */
export async function retryWhileBusy<T>(fn: () => Promise<T>, isBusy: (error: unknown) => boolean = (error) => isWorkspaceError(error, "WS_GC_BUSY")): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (error) {
      if (attempt >= 5 || !isBusy(error)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
    }
  }
}
