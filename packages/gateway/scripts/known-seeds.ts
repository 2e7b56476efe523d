/**
 * Regenerates packages/gateway/src/legacy/known-seeds.json from an installed `openclaw` npm
 * package: the sha256 of each bootstrap template as OpenClaw writes it (front matter stripped,
 * leading whitespace trimmed: `stripFrontMatter` in its workspace module) and of every file of
 * its bundled skills (`skills/`, `custodian-skills/`, each extension's `skills/`: what a sandbox
 * workspace's `skills/` copy holds). Digests of releases
 * already in the file are kept (a union), so the file covers every release it was run on.
 *
 *   node packages/gateway/scripts/known-seeds.ts <node_modules/openclaw> [--check]
 *
 * `--check` writes nothing and exits 1 when the file lacks a digest of that package (the
 * real-OpenClaw suite runs it so a stale file fails CI).
 */
import { createHash } from "node:crypto";
import { readFile, readdir, writeFile } from "node:fs/promises";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const OUT = fileURLToPath(new URL("../src/legacy/known-seeds.json", import.meta.url));
const BOOTSTRAP = ["AGENTS.md", "SOUL.md", "TOOLS.md", "IDENTITY.md", "USER.md", "HEARTBEAT.md", "BOOTSTRAP.md"];

interface KnownSeedsFile {
  versions: string[];
  bootstrap: Record<string, string[]>;
  skills: Record<string, string[]>;
}

const sha256 = (data: string | Buffer): string => createHash("sha256").update(data).digest("hex");

/** OpenClaw's `stripFrontMatter`: the body after a leading `---` block, leading whitespace removed. */
export function stripFrontMatter(content: string): string {
  const text = content.replace(/\r\n?/g, "\n");
  if (!text.startsWith("---\n")) return content;
  const end = text.indexOf("\n---", 4);
  if (end === -1) return content;
  const after = text.indexOf("\n", end + 4);
  return (after === -1 ? "" : text.slice(after + 1)).replace(/^\s+/, "");
}

async function templates(pkg: string): Promise<Record<string, string[]>> {
  const dir = path.join(pkg, "docs", "reference", "templates");
  const out: Record<string, string[]> = {};
  for (const file of await readdir(dir)) {
    const name = file.replace(/\.dev\.md$/, ".md");
    if (!BOOTSTRAP.includes(name)) continue;
    (out[name] ??= []).push(sha256(stripFrontMatter(await readFile(path.join(dir, file), "utf8"))));
  }
  return out;
}

/** Every skill folder the package ships: `skills/`, `custodian-skills/` and each bundled extension's `skills/`. */
async function skillRoots(pkg: string): Promise<string[]> {
  const extensions = path.join(pkg, "dist", "extensions");
  const names = await readdir(extensions).catch(() => [] as string[]);
  return [path.join(pkg, "skills"), path.join(pkg, "custodian-skills"), ...names.map((name) => path.join(extensions, name, "skills"))];
}

async function skills(pkg: string): Promise<Record<string, string[]>> {
  const out: Record<string, string[]> = {};
  for (const root of await skillRoots(pkg)) {
    const entries = await readdir(root, { recursive: true, withFileTypes: true }).catch(() => []);
    for (const entry of entries) {
      if (!entry.isFile()) continue;
      const file = path.join(entry.parentPath, entry.name);
      const rel = path.relative(root, file).split(path.sep).join("/");
      out[rel] = [...new Set([...(out[rel] ?? []), sha256(await readFile(file))])];
    }
  }
  return out;
}

function merge(into: Record<string, string[]>, from: Record<string, string[]>): number {
  let added = 0;
  for (const [name, hashes] of Object.entries(from)) {
    const set = new Set(into[name] ?? []);
    for (const hash of hashes) {
      if (set.has(hash)) continue;
      set.add(hash);
      added++;
    }
    into[name] = [...set].sort();
  }
  return added;
}

function sorted(record: Record<string, string[]>): Record<string, string[]> {
  return Object.fromEntries(Object.entries(record).sort(([a], [b]) => a.localeCompare(b)));
}

async function main(argv: string[]): Promise<number> {
  const pkg = argv.find((arg) => !arg.startsWith("--"));
  if (pkg === undefined) {
    process.stderr.write("usage: node packages/gateway/scripts/known-seeds.ts <path to the openclaw package> [--check]\n");
    return 2;
  }
  const { version } = JSON.parse(await readFile(path.join(pkg, "package.json"), "utf8")) as { version: string };
  const current = JSON.parse(await readFile(OUT, "utf8").catch(() => '{"versions":[],"bootstrap":{},"skills":{}}')) as KnownSeedsFile;
  const added = merge(current.bootstrap, await templates(pkg)) + merge(current.skills, await skills(pkg));
  const versionAdded = !current.versions.includes(version);
  if (argv.includes("--check")) {
    if (added === 0 && !versionAdded) return 0;
    process.stderr.write(`known-seeds.json lacks ${added} digest(s) of openclaw@${version}; run: node packages/gateway/scripts/known-seeds.ts ${pkg}\n`);
    return 1;
  }
  if (versionAdded) current.versions = [...current.versions, version].sort();
  await writeFile(OUT, `${JSON.stringify({ versions: current.versions, bootstrap: sorted(current.bootstrap), skills: sorted(current.skills) }, null, 2)}\n`);
  process.stdout.write(`known-seeds.json: openclaw@${version}, ${added} digest(s) added\n`);
  return 0;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) process.exitCode = await main(process.argv.slice(2));
