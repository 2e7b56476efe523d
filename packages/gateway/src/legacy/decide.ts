import { lstat, realpath } from "node:fs/promises";
import * as path from "node:path";
import { type DirIdentity, errnoCode } from "@ocgw/workspace";
import type { LegacyContext } from "./context.ts";
import { SANDBOX_DIR_NAME } from "./sandbox-names.ts";
import { describeUnseeded, unseededEntries } from "./seeded.ts";
import { type PlainTree, walkPlainTree } from "./tree.ts";

/**
 * The decision for one directory: removed only when OpenClaw's own state proves it orphaned AND
 * it holds nothing but what OpenClaw seeded AND it is a plain tree older than the minimum age.
 * Every other outcome is a reason to keep it, stated.
 */

/** Why a directory is a candidate. */
export type LegacyRemoveCode = "orphan-workspace" | "orphan-sandbox" | "idle-sandbox" | "interrupted-removal";
/** Why a directory is kept. */
export type LegacyKeepCode = "agent-workspace" | "live-session" | "unmapped" | "store-unreadable" | "user-files" | "too-young" | "not-plain" | "unreadable";

/** Where a directory was found: `<stateDir>/workspace-*`, `<sandbox root>/workspace-*`, or our own `.trash-ocgw-legacy-*`. */
export type LegacyLocation = "state" | "sandboxes" | "trash";

export interface LegacyItem {
  readonly path: string;
  readonly location: LegacyLocation;
  /** Also found as the other kind (a sandbox root that is the state dir itself): both proofs must hold. */
  readonly alsoState?: boolean | undefined;
}

export interface LegacyEntry extends LegacyItem {
  readonly action: "remove" | "keep";
  readonly code: LegacyRemoveCode | LegacyKeepCode;
  readonly reason: string;
  /** Bytes of regular files below it (0 when it was not walked). */
  readonly sizeBytes: number;
  /** Since its newest change (ms), when it was walked. */
  readonly ageMs: number | null;
  /** Its device and inode when it was decided: removal refuses anything else at this path. */
  readonly identity: DirIdentity | null;
}

type Verdict = { code: LegacyRemoveCode | LegacyKeepCode; reason: string };

const keep = (code: LegacyKeepCode, reason: string): Verdict => ({ code, reason });

function isInsideOrSame(parent: string, child: string): boolean {
  const rel = path.relative(parent, child);
  return rel === "" || (!rel.startsWith("..") && !path.isAbsolute(rel));
}

/** Kept when it is, contains, or is the same directory as any workspace a known agent resolves to. */
async function agentOwner(ctx: LegacyContext, target: string, identity: DirIdentity): Promise<Verdict | undefined> {
  const real = await realpath(target).catch(() => target);
  for (const [protectedPath, { why, identity: other }] of ctx.protectedPaths) {
    if (protectedPath === target || protectedPath === real) return keep("agent-workspace", why);
    if (other !== undefined && other.dev === identity.dev && other.ino === identity.ino) return keep("agent-workspace", `the same directory as ${why} (${protectedPath})`);
    if (isInsideOrSame(target, protectedPath)) return keep("agent-workspace", `contains ${why} (${protectedPath})`);
  }
  const id = path.basename(target).slice("workspace-".length);
  const agent = ctx.agents.find((candidate) => candidate.id === id || candidate.id === id.toLowerCase());
  if (agent !== undefined) return keep("agent-workspace", `named for agent "${agent.id}"`);
  return undefined;
}

/** The ownership proof: an agent workspace nobody resolves to, or a sandbox no live session maps to. */
async function ownership(ctx: LegacyContext, item: LegacyItem, identity: DirIdentity): Promise<Verdict> {
  if (item.location === "trash") return { code: "interrupted-removal", reason: "left by an interrupted `gc --legacy` removal" };
  const owner = await agentOwner(ctx, item.path, identity);
  if (owner !== undefined) return owner;
  if (item.location === "state") return { code: "orphan-workspace", reason: "no configured agent resolves to it" };
  const name = path.basename(item.path);
  if (!SANDBOX_DIR_NAME.test(name)) {
    if (item.alsoState === true) return { code: "orphan-workspace", reason: "no configured agent resolves to it" };
    return keep("unmapped", "not named as OpenClaw names sandbox workspaces (workspace-<32 hex>): its owner cannot be computed");
  }
  if (ctx.storeProblems.length > 0) return keep("store-unreadable", `a session store cannot be read, so its sessions' directories are unknown: ${ctx.storeProblems[0]}`);
  if (ctx.stateDb.registryDirs.has(item.path)) return keep("live-session", "a container in OpenClaw's sandbox registry uses it");
  const owned = ctx.ownedNames.get(name);
  if (owned !== undefined) return keep("live-session", `the sandbox workspace of ${owned}`);
  const idle = ctx.idleNames.get(name);
  if (idle !== undefined) return { code: "idle-sandbox", reason: `its session ${idle} has been idle longer than the --idle-days limit` };
  return { code: "orphan-sandbox", reason: "no session in OpenClaw's session store maps to it" };
}

/** How strict the content proof is. */
export interface DecideOptions {
  /** A directory changed more recently than this (ms) is kept. */
  readonly minAgeMs: number;
  /** Skip the "nothing but seeds" proof: an orphan's work products go with it (an operator's explicit choice). Default false. */
  readonly includeUserFiles?: boolean | undefined;
}

/** The content proof, after ownership: plain, old enough, nothing but seeds (unless work products are included). */
async function content(ctx: LegacyContext, item: LegacyItem, tree: PlainTree, options: DecideOptions): Promise<Verdict | undefined> {
  const age = ctx.now - tree.newestChangeMs;
  if (age < options.minAgeMs) return keep("too-young", `changed ${Math.max(0, Math.round(age / 1000))} s ago, younger than the minimum age`);
  if (item.location === "trash" || options.includeUserFiles === true) return undefined;
  const real = await realpath(item.path).catch(() => item.path);
  const foreign = await unseededEntries(item.path, tree, { recorded: ctx.stateDb.recordedFor(item.path, real), bootstrap: ctx.bootstrap, skills: ctx.skills });
  return foreign.length === 0 ? undefined : keep("user-files", describeUnseeded(foreign));
}

/** Decides one directory. Never throws: trouble reading it is a reason to keep it. */
export async function decideEntry(ctx: LegacyContext, item: LegacyItem, options: DecideOptions): Promise<LegacyEntry> {
  const base = { ...item, sizeBytes: 0, ageMs: null, identity: null };
  try {
    const st = await lstat(item.path, { bigint: true });
    if (st.isSymbolicLink()) return { ...base, action: "keep", code: "not-plain", reason: "a symlink: never followed or removed" };
    if (!st.isDirectory()) return { ...base, action: "keep", code: "not-plain", reason: "not a directory" };
    const identity = { dev: st.dev.toString(), ino: st.ino.toString() };
    const owner = await ownership(ctx, item, identity);
    const tree = await walkPlainTree(item.path, { mounts: ctx.mounts });
    const sized = "code" in tree ? { ...base, identity } : { ...base, sizeBytes: tree.bytes, ageMs: Math.max(0, ctx.now - tree.newestChangeMs), identity: tree.identity };
    if (owner.code === "agent-workspace" || owner.code === "live-session" || owner.code === "unmapped" || owner.code === "store-unreadable") return { ...sized, action: "keep", ...owner };
    if ("code" in tree) return { ...sized, action: "keep", code: "not-plain", reason: tree.detail };
    const verdict = await content(ctx, item, tree, options);
    return verdict === undefined ? { ...sized, action: "remove", ...owner } : { ...sized, action: "keep", ...verdict };
  } catch (error) {
    return { ...base, action: "keep", code: "unreadable", reason: `cannot be inspected (${errnoCode(error) ?? (error instanceof Error ? error.message : String(error))})` };
  }
}
