import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import * as path from "node:path";
import knownSeeds from "./known-seeds.json" with { type: "json" };
import type { PlainTree, TreeEntry } from "./tree.ts";

/**
 * The second proof of the legacy reclaim: a directory holds nothing but what OpenClaw seeded.
 * A file counts as seeded only when its bytes are proven OpenClaw's; anything else, or a seeded
 * file someone changed, means someone wrote there and the directory is kept.
 */

/** Top-level files OpenClaw's `ensureAgentWorkspace` seeds (any release). */
export const BOOTSTRAP_NAMES: ReadonlySet<string> = new Set(["AGENTS.md", "SOUL.md", "TOOLS.md", "IDENTITY.md", "USER.md", "HEARTBEAT.md", "BOOTSTRAP.md"]);

/** sha256 hex digests by file path (a bootstrap file's name, or a skill file's path below `skills/`). */
export type HashIndex = ReadonlyMap<string, ReadonlySet<string>>;

/** What proves a file's bytes OpenClaw's. */
export interface SeedEvidence {
  /** What OpenClaw 2026.9+ recorded for this very workspace (`workspace_generated_bootstrap_hashes`), by file name. */
  readonly recorded: HashIndex;
  /**
   * Bootstrap files with no record: OpenClaw's own templates (known-seeds.json, per release) and
   * the same-named files of the configured agents' workspaces (a sandbox copies them; the
   * original still exists, so nothing is lost).
   */
  readonly bootstrap: HashIndex;
  /** `skills/<path>` copies: OpenClaw's bundled skills (known-seeds.json) and the skill folders OpenClaw syncs from. */
  readonly skills: HashIndex;
}

/** The releases known-seeds.json was generated from, and its indexes. */
export const KNOWN_SEEDS = {
  versions: knownSeeds.versions as readonly string[],
  bootstrap: toIndex(knownSeeds.bootstrap),
  skills: toIndex(knownSeeds.skills),
};

function toIndex(record: Record<string, string[]>): Map<string, Set<string>> {
  return new Map(Object.entries(record).map(([name, hashes]) => [name, new Set(hashes)]));
}

/** Merges indexes (a union of the digests per path). */
export function mergeIndexes(...indexes: HashIndex[]): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const index of indexes) {
    for (const [name, hashes] of index) {
      const set = out.get(name) ?? new Set<string>();
      for (const hash of hashes) set.add(hash);
      out.set(name, set);
    }
  }
  return out;
}

/** No seed is this large; a bigger file is someone's, and is not read. */
const MAX_SEED_BYTES = 4 * 1024 * 1024;
const GIT_FILES = /^\.git\/(HEAD|config|description|info\/exclude|hooks\/[A-Za-z0-9_.-]+\.sample)$/;
const GIT_DIRS = new Set([".git", ".git/hooks", ".git/info", ".git/objects", ".git/objects/info", ".git/objects/pack", ".git/refs", ".git/refs/heads", ".git/refs/tags", ".git/branches"]);

export async function sha256File(file: string): Promise<string> {
  return createHash("sha256").update(await readFile(file)).digest("hex");
}

/** Whether one file of the tree is proven OpenClaw's. */
async function isSeededFile(dir: string, entry: TreeEntry, evidence: SeedEvidence): Promise<boolean> {
  const { rel } = entry;
  if (entry.size > MAX_SEED_BYTES) return false;
  const full = path.join(dir, rel);
  if (BOOTSTRAP_NAMES.has(rel)) {
    const hash = await sha256File(full);
    return evidence.recorded.get(rel)?.has(hash) === true || evidence.bootstrap.get(rel)?.has(hash) === true;
  }
  if (rel === ".openclaw/workspace-state.json") return entry.size <= 64 * 1024;
  if (rel === ".git/HEAD") return /^ref: refs\/heads\/[^\s]+\s*$/.test(await readFile(full, "utf8"));
  if (GIT_FILES.test(rel)) return true;
  if (rel === "skills/.openclaw-sync.json") return isSyncRecord(await readFile(full, "utf8"));
  if (rel.startsWith("skills/")) return evidence.skills.get(rel.slice("skills/".length))?.has(await sha256File(full)) === true;
  return false;
}

/** `skills/.openclaw-sync.json` is OpenClaw's own record of a skills sync: `{ entryKeys: [...], ... }`. */
function isSyncRecord(text: string): boolean {
  try {
    const value = JSON.parse(text) as unknown;
    return typeof value === "object" && value !== null && Array.isArray((value as { entryKeys?: unknown }).entryKeys);
  } catch {
    return false;
  }
}

/** The entries of a tree that are not proven OpenClaw's: files, and directories that hold no seeded file. */
export async function unseededEntries(dir: string, tree: PlainTree, evidence: SeedEvidence): Promise<string[]> {
  const foreign: string[] = [];
  const seededDirs = new Set<string>([".openclaw", "skills", ...GIT_DIRS]);
  for (const entry of tree.entries) {
    if (entry.kind !== "file") continue;
    if (await isSeededFile(dir, entry, evidence)) {
      for (let parent = path.posix.dirname(entry.rel); parent !== "."; parent = path.posix.dirname(parent)) seededDirs.add(parent);
    } else foreign.push(entry.rel);
  }
  for (const entry of tree.entries) if (entry.kind === "dir" && !seededDirs.has(entry.rel) && !foreign.some((file) => file.startsWith(`${entry.rel}/`))) foreign.push(`${entry.rel}/`);
  return foreign.sort();
}

/** `3 files not written by OpenClaw (AGENTS.md, notes.txt, src/)`. */
export function describeUnseeded(foreign: readonly string[]): string {
  const shown = foreign.slice(0, 3).join(", ") + (foreign.length > 3 ? ", …" : "");
  return `${foreign.length} ${foreign.length === 1 ? "file" : "files"} not written by OpenClaw (${shown})`;
}
