/**
 * `npm run test:packed`: the packages as a user gets them. Builds from clean, `npm pack`s every workspace
 * package into a temp dir, then for each Node (24, the repo's own, and the oldest supported, installed
 * from npm on first use into node_modules/.cache/ocgw-node/) installs the tarballs into an empty prefix with that Node's npm and,
 * with PATH holding only the prefix's `node_modules/.bin`, that Node's directory and /usr/bin:/bin:
 * `ocgw --version`, `ocgw gateway run --port 0` (HOME, TMPDIR, OCGW_STATE_DIR and the ephemeral
 * root inside the prefix) → `call health`, `chat hello`, `workspaces ls --json` → SIGINT → exit 0
 * with nothing but `.instances` left in the root, and a scratch ESM script that imports the
 * libraries (the OpenClaw plugin's entry and its manifest too) and starts/stops a gateway through
 * `startGateway`. Once, the installed bin under the
 * machine's old Node (< 22, when there is one) must print one line and exit 1.
 *
 * Every child is stopped by its PID; every temp dir is removed (OCGW_KEEP_TMP=1 keeps them).
 * Ends with `packed install: N passed, N failed`; exit code 1 when anything failed.
 */
import { type ChildProcess, spawn } from "node:child_process";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

const REPO = fileURLToPath(new URL("../", import.meta.url));
const PACKAGES = ["workspace", "gateway", "cli", "openclaw-plugin"] as const;
/** Only turns a hang into a failure. */
const STEP_TIMEOUT_MS = 180_000;
const READY_TIMEOUT_MS = 30_000;

const NODE_24 = { label: "node 24", bin: path.join(REPO, "node_modules", "node", "bin", "node") };
/** The oldest supported Node (engines `^22.16.0 || >=24.0.0`), installed from npm on first use. */
const OLDEST_NODE_VERSION = "22.16.0";
const OLDEST_NODE_DIR = path.join(REPO, "node_modules", ".cache", "ocgw-node", OLDEST_NODE_VERSION);
const NODES = [NODE_24, { label: `node ${OLDEST_NODE_VERSION} (oldest supported)`, bin: path.join(OLDEST_NODE_DIR, "node_modules", "node", "bin", "node") }];

let passed = 0;
let failed = 0;

function log(line: string): void {
  process.stdout.write(`[packed] ${line}\n`);
}

/** Runs one named check; a throw is a failure (printed), never an abort of the whole run. */
async function check<T>(name: string, body: () => Promise<T>): Promise<T | undefined> {
  const started = performance.now();
  try {
    const result = await body();
    passed += 1;
    log(`  ok   ${name} (${Math.round(performance.now() - started)} ms)`);
    return result;
  } catch (error) {
    failed += 1;
    log(`  FAIL ${name}: ${error instanceof Error ? error.message : String(error)}`);
    return undefined;
  }
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Spawns a command and collects its output; SIGKILLed by PID if it outlives STEP_TIMEOUT_MS. */
function exec(command: string, args: readonly string[], options: { cwd: string; env: NodeJS.ProcessEnv }): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, [...args], { cwd: options.cwd, env: options.env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")));
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
    const timer = setTimeout(() => killPid(child.pid, "SIGKILL"), STEP_TIMEOUT_MS);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.on("close", (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

function killPid(pid: number | undefined, signal: NodeJS.Signals): void {
  if (pid === undefined) return;
  try {
    process.kill(pid, signal);
  } catch {
    // Already gone.
  }
}

function expectExit(result: Exit, what: string, code = 0): void {
  if (result.code !== code) {
    throw new Error(`${what} exited ${result.code ?? result.signal}, expected ${code}\n${result.stdout}${result.stderr}`.trimEnd());
  }
}

/** The isolated environment of one prefix: nothing from ours but what is named here. */
function isolatedEnv(prefix: string, nodeBin: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    PATH: [path.join(prefix, "node_modules", ".bin"), path.dirname(nodeBin), "/usr/bin", "/bin"].join(":"),
    HOME: path.join(prefix, "home"),
    TMPDIR: path.join(prefix, "tmp"),
    OCGW_STATE_DIR: path.join(prefix, "state"),
    ...extra,
  };
}

/**
 * npm's environment: ours (its cache, registry and TLS settings: a proxy's CA in
 * NODE_EXTRA_CA_CERTS, say) minus what `npm run` and the repo add, the chosen Node first on PATH.
 */
function npmEnv(nodeBin: string): NodeJS.ProcessEnv {
  // npm's own settings (npm_config_*: registry, cafile, proxy, cache, its global config file) stay:
  // run by another Node, npm would look for its global config next to that Node and miss them.
  // The rest of `npm run`'s variables (the repo's package and its prefix) go.
  const dropped = /^(npm_(?!config_)|npm_config_(local_prefix|prefix|global|workspaces?|allow_scripts|call)$|INIT_CWD$|NODE_OPTIONS$|NODE_PATH$|OCGW_)/i;
  const env: NodeJS.ProcessEnv = Object.fromEntries(Object.entries(process.env).filter(([name]) => !dropped.test(name)));
  return { ...env, PATH: [path.dirname(nodeBin), "/usr/local/bin", "/usr/bin", "/bin"].join(":") };
}

interface RunningGateway {
  child: ChildProcess;
  url: string;
  port: string;
  exited: Promise<number | null>;
  output(): string;
}

/** `ocgw gateway run …` from PATH, resolved once its ready line arrives. */
function startGatewayChild(args: readonly string[], env: NodeJS.ProcessEnv, cwd: string): Promise<RunningGateway> {
  const child = spawn("ocgw", ["gateway", "run", ...args], { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
  let stdout = "";
  let stderr = "";
  const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      killPid(child.pid, "SIGKILL");
      reject(new Error(`no ready line within ${READY_TIMEOUT_MS} ms\n${stdout}${stderr}`.trimEnd()));
    }, READY_TIMEOUT_MS);
    child.on("error", (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")));
    child.stdout.on("data", (chunk: Buffer) => {
      stdout += chunk.toString("utf8");
      const ready = /^ocgw gateway ready on (ws:\/\/127\.0\.0\.1:(\d+))/m.exec(stdout);
      if (ready?.[1] && ready[2]) {
        clearTimeout(timer);
        resolve({ child, url: ready[1], port: ready[2], exited, output: () => `${stdout}${stderr}` });
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`exited ${code} before its ready line\n${stdout}${stderr}`.trimEnd()));
    });
  });
}

/** The scratch ESM script: imports every package by name and runs a gateway through startGateway. */
const SCRATCH = `import { startGateway, GATEWAY_VERSION } from "@ocgw/gateway";
import { createEphemeralProvider } from "@ocgw/workspace";
import { run } from "@ocgw/cli";
import plugin from "@ocgw/openclaw-plugin";
import { createRequire } from "node:module";
import * as fs from "node:fs/promises";
import * as path from "node:path";

const [stateDir, root] = process.argv.slice(2);
if (typeof run !== "function") throw new Error("@ocgw/cli exports no run()");
const manifest = createRequire(import.meta.url)("@ocgw/openclaw-plugin/openclaw.plugin.json");
if (plugin.id !== "ocgw-reclaim" || manifest.id !== plugin.id || typeof plugin.register !== "function") throw new Error("@ocgw/openclaw-plugin: entry or manifest is not the plugin");
const provider = await createEphemeralProvider({ root: path.join(root, "provider") });
const lease = await provider.acquire({ key: "agent:main:scratch" });
await fs.access(lease.path);
await provider.release(lease, "delete");
await provider.close();
const gateway = await startGateway({ stateDir, gateway: { port: 0 }, workspace: { ephemeral: { root: path.join(root, "gateway") }, gc: { intervalMs: 0 } } });
if (!/^ws:\\/\\/127\\.0\\.0\\.1:\\d+$/.test(gateway.url)) throw new Error("unexpected url " + gateway.url);
await gateway.close("scratch done");
console.log("scratch ok " + GATEWAY_VERSION + " " + gateway.url);
`;

async function packAll(into: string): Promise<string[]> {
  const result = await exec("npm", ["pack", "--workspaces", "--pack-destination", into, "--json"], { cwd: REPO, env: npmEnv(NODE_24.bin) });
  expectExit(result, "npm pack");
  const packs = JSON.parse(result.stdout) as { name: string; filename: string; size: number; unpackedSize: number; files: { path: string }[] }[];
  const allowed = /^(package\.json|README\.md|LICENSE|openclaw\.plugin\.json|dist\/.+\.(js|d\.ts|js\.map|json)|dist\/THIRD-PARTY-LICENSES\.md)$/;
  for (const pack of packs) {
    const stray = pack.files.map((file) => file.path).filter((file) => !allowed.test(file) || /(^|\/)(test|tests|fixtures?)\//.test(file));
    if (stray.length > 0) throw new Error(`${pack.name} would ship ${stray.join(", ")}`);
    for (const needed of ["README.md", "LICENSE", "package.json"]) {
      if (!pack.files.some((file) => file.path === needed)) throw new Error(`${pack.name} lacks ${needed}`);
    }
    log(`    ${pack.filename}: ${pack.files.length} files, ${(pack.size / 1024).toFixed(0)} kB packed, ${(pack.unpackedSize / 1024).toFixed(0)} kB unpacked`);
  }
  if (packs.length !== PACKAGES.length) throw new Error(`packed ${packs.length} packages, expected ${PACKAGES.length}`);
  return packs.map((pack) => path.join(into, pack.filename));
}

/** The first system Node older than 22 (/usr/bin/node is v20 on the CI image), or undefined. */
async function oldSystemNode(): Promise<{ bin: string; version: string } | undefined> {
  for (const bin of ["/usr/bin/node", "/usr/local/bin/node"]) {
    const probe = await exec(bin, ["--version"], { cwd: REPO, env: { PATH: "/usr/bin:/bin" } }).catch(() => undefined);
    const version = probe?.code === 0 ? probe.stdout.trim() : "";
    if (/^v(1\d|2[01])\./.test(version)) return { bin, version };
  }
  return undefined;
}

async function exercise(node: { label: string; bin: string }, tarballs: readonly string[], tmp: string, cliVersion: string, oldNodeToo: boolean): Promise<void> {
  const started = performance.now();
  const prefix = path.join(tmp, node.label.replace(/\W+/g, "-").replace(/-+$/, ""));
  for (const dir of ["home", "tmp", "state"]) await fs.mkdir(path.join(prefix, dir), { recursive: true });
  const nodeVersion = (await exec(node.bin, ["--version"], { cwd: prefix, env: {} })).stdout.trim();
  log(`${node.label}: ${nodeVersion} (${node.bin})`);
  const env = isolatedEnv(prefix, node.bin);

  const installed = await check(`${node.label}: npm install --prefix <tmp> <${tarballs.length} tarballs>`, async () => {
    await fs.writeFile(path.join(prefix, "package.json"), '{ "name": "ocgw-packed-scratch", "private": true, "type": "module" }\n');
    const result = await exec("npm", ["install", "--prefix", prefix, "--no-audit", "--no-fund", "--no-package-lock", ...tarballs], { cwd: prefix, env: npmEnv(node.bin) });
    expectExit(result, "npm install");
    // The tarballs, not a registry's @ocgw packages: one copy of each, from dist/.
    for (const name of PACKAGES) {
      const manifest = path.join(prefix, "node_modules", "@ocgw", name, "package.json");
      const { _resolved: resolved } = JSON.parse(await fs.readFile(manifest, "utf8")) as { _resolved?: string };
      if (resolved !== undefined && !resolved.startsWith("file:")) throw new Error(`@ocgw/${name} came from ${resolved}`);
      await fs.access(path.join(prefix, "node_modules", "@ocgw", name, "dist"));
    }
    for (const name of ["cli", "openclaw-plugin"]) {
      const nested = await fs.readdir(path.join(prefix, "node_modules", "@ocgw", name, "node_modules", "@ocgw")).catch(() => []);
      if (nested.length > 0) throw new Error(`@ocgw/${name} has its own copies of @ocgw/${nested.join(", @ocgw/")}`);
    }
    return true;
  });
  if (!installed) return;

  await check(`${node.label}: ocgw --version`, async () => {
    const result = await exec("ocgw", ["--version"], { cwd: prefix, env });
    expectExit(result, "ocgw --version");
    if (result.stdout !== `${cliVersion}\n`) throw new Error(`printed ${JSON.stringify(result.stdout)}, expected ${cliVersion}`);
  });

  const root = path.join(prefix, "ephemeral");
  const config = path.join(prefix, "ocgw.json5");
  await fs.writeFile(config, `// packed-install test\n{ workspace: { ephemeral: { root: ${JSON.stringify(root)} } } }\n`);
  const gateway = await check(`${node.label}: ocgw gateway run --port 0 → ready line`, () => startGatewayChild(["--port", "0", "--state-dir", path.join(prefix, "state"), "--config", config], env, prefix));
  if (gateway) {
    try {
      const cliEnv = { ...env, OCGW_PORT: gateway.port, OCGW_CONFIG: config };
      await check(`${node.label}: ocgw call health`, async () => {
        const result = await exec("ocgw", ["call", "health"], { cwd: prefix, env: cliEnv });
        expectExit(result, "ocgw call health");
        if (/Warning|\n\s+at /.test(result.stderr)) throw new Error(`a warning or stack on stderr: ${result.stderr}`);
        if ((JSON.parse(result.stdout) as { ok?: unknown }).ok !== true) throw new Error(`health: ${result.stdout}`);
      });
      await check(`${node.label}: ocgw chat hello`, async () => {
        const result = await exec("ocgw", ["chat", "hello"], { cwd: prefix, env: cliEnv });
        expectExit(result, "ocgw chat hello");
        if (/Warning|\n\s+at /.test(result.stderr)) throw new Error(`a warning or stack on stderr: ${result.stderr}`);
        if (result.stdout !== "Echo: hello\n") throw new Error(`printed ${JSON.stringify(result.stdout)}`);
      });
      await check(`${node.label}: ocgw workspaces ls --json --url ${gateway.url}`, async () => {
        const result = await exec("ocgw", ["workspaces", "ls", "--json", "--url", gateway.url], { cwd: prefix, env: cliEnv });
        expectExit(result, "ocgw workspaces ls");
        const rows = (JSON.parse(result.stdout) as { rows?: { state: string }[] }).rows ?? [];
        if (rows.length !== 1) throw new Error(`expected the chat's one workspace, got ${rows.length} rows: ${result.stdout}`);
      });
    } finally {
      await check(`${node.label}: SIGINT → exit 0, the ephemeral root holds only .instances`, async () => {
        killPid(gateway.child.pid, "SIGINT");
        const kill = setTimeout(() => killPid(gateway.child.pid, "SIGKILL"), 20_000);
        const code = await gateway.exited;
        clearTimeout(kill);
        if (code !== 0) throw new Error(`exited ${code}\n${gateway.output()}`.trimEnd());
        const left = (await fs.readdir(root)).sort();
        if (left.join(",") !== ".instances") throw new Error(`the ephemeral root holds ${left.join(", ")}`);
      });
    }
  }

  await check(`${node.label}: a scratch ESM script imports the packages and runs startGateway`, async () => {
    const script = path.join(prefix, "scratch.mjs");
    await fs.writeFile(script, SCRATCH);
    const result = await exec(node.bin, [script, path.join(prefix, "scratch-state"), path.join(prefix, "scratch-root")], { cwd: prefix, env });
    expectExit(result, "scratch.mjs");
    if (!result.stdout.startsWith("scratch ok ")) throw new Error(`printed ${JSON.stringify(result.stdout)}`);
  });

  if (oldNodeToo) {
    const old = await oldSystemNode();
    if (old === undefined) {
      log(`  skip the old-Node check: no Node < 22 in /usr/bin or /usr/local/bin`);
    } else {
      await check(`${old.version} (${old.bin}): the installed ocgw prints one line and exits 1`, async () => {
        const result = await exec(path.join(prefix, "node_modules", ".bin", "ocgw"), ["gateway", "run"], { cwd: prefix, env: { ...env, PATH: `${path.dirname(old.bin)}:/usr/bin:/bin` } });
        expectExit(result, "ocgw on an old Node", 1);
        const expected = `ocgw: needs Node.js ^22.16.0 || >=24.0.0, found ${old.version}\n`;
        if (result.stderr !== expected || result.stdout !== "") throw new Error(`printed ${JSON.stringify(result.stdout + result.stderr)}, expected ${JSON.stringify(expected)}`);
      });
    }
  }

  const du = await exec("du", ["-sh", prefix], { cwd: prefix, env: { PATH: "/usr/bin:/bin" } });
  const nm = await exec("du", ["-sh", path.join(prefix, "node_modules")], { cwd: prefix, env: { PATH: "/usr/bin:/bin" } });
  log(`${node.label}: done in ${((performance.now() - started) / 1000).toFixed(1)} s; installed size ${nm.stdout.split("\t")[0] ?? "?"} (node_modules), prefix ${du.stdout.split("\t")[0] ?? "?"}`);
}

/**
 * The `node` npm package at the oldest supported version, in its own prefix under the repo's cache:
 * not a devDependency, whose `node` bin would fight the repo's Node 24 for node_modules/.bin/node.
 */
async function installOldestNode(): Promise<void> {
  const bin = path.join(OLDEST_NODE_DIR, "node_modules", "node", "bin", "node");
  const found = await exec(bin, ["--version"], { cwd: REPO, env: {} }).catch(() => undefined);
  if (found?.stdout.trim() === `v${OLDEST_NODE_VERSION}`) return;
  await fs.rm(OLDEST_NODE_DIR, { recursive: true, force: true });
  await fs.mkdir(OLDEST_NODE_DIR, { recursive: true });
  // Its preinstall fetches the platform binary: allowed here by name, as the root allows the repo's own `node`.
  await fs.writeFile(path.join(OLDEST_NODE_DIR, "package.json"), `${JSON.stringify({ private: true, allowScripts: { node: true } })}\n`);
  expectExit(await exec("npm", ["install", "--no-audit", "--no-fund", `node@${OLDEST_NODE_VERSION}`], { cwd: OLDEST_NODE_DIR, env: npmEnv(NODE_24.bin) }), `npm install node@${OLDEST_NODE_VERSION}`);
  const installed = (await exec(bin, ["--version"], { cwd: REPO, env: {} })).stdout.trim();
  if (installed !== `v${OLDEST_NODE_VERSION}`) throw new Error(`${bin} reports ${installed}, not v${OLDEST_NODE_VERSION}`);
}

/**
 * `@ocgw/cli` on its own: it is one bundle (scripts/bundle-cli.ts), so its tarball installs with no
 * dependency and no registry, runs, and its installed size is the whole cost of `npm i -g @ocgw/cli`.
 */
async function cliAlone(tarballs: readonly string[], tmp: string, cliVersion: string): Promise<void> {
  const prefix = path.join(tmp, "cli-alone");
  await fs.mkdir(prefix);
  const cli = tarballs.find((file) => path.basename(file).startsWith("ocgw-cli-"));
  if (cli === undefined) throw new Error("no @ocgw/cli tarball");
  const manifest = JSON.parse(await fs.readFile(path.join(REPO, "packages", "cli", "package.json"), "utf8")) as { dependencies?: object };
  if (manifest.dependencies !== undefined) throw new Error(`@ocgw/cli declares dependencies: ${Object.keys(manifest.dependencies).join(", ")}`);
  await fs.writeFile(path.join(prefix, "package.json"), '{ "name": "ocgw-cli-alone", "private": true }\n');
  expectExit(await exec("npm", ["install", "--prefix", prefix, "--offline", "--no-audit", "--no-fund", "--no-package-lock", cli], { cwd: prefix, env: npmEnv(NODE_24.bin) }), "npm install <cli tarball>");
  const packages = (await fs.readdir(path.join(prefix, "node_modules"))).filter((name) => !name.startsWith("."));
  const scoped = await fs.readdir(path.join(prefix, "node_modules", "@ocgw"));
  if (packages.join(",") !== "@ocgw" || scoped.join(",") !== "cli") throw new Error(`installed ${packages.join(", ")} (@ocgw/${scoped.join(", @ocgw/")})`);
  const result = await exec("ocgw", ["--version"], { cwd: prefix, env: isolatedEnv(prefix, NODE_24.bin) });
  expectExit(result, "ocgw --version");
  if (result.stdout !== `${cliVersion}\n`) throw new Error(`printed ${JSON.stringify(result.stdout)}`);
  const du = await exec("du", ["-sh", path.join(prefix, "node_modules")], { cwd: prefix, env: { PATH: "/usr/bin:/bin" } });
  log(`    @ocgw/cli installed alone: ${du.stdout.split("\t")[0] ?? "?"} (node_modules, with source maps and licences)`);
}

async function main(): Promise<void> {
  const tmp = await fs.realpath(await fs.mkdtemp(path.join(os.tmpdir(), "ocgw-packed-")));
  log(`temp dir ${tmp}`);
  try {
    const cliVersion = (JSON.parse(await fs.readFile(path.join(REPO, "packages", "cli", "package.json"), "utf8")) as { version: string }).version;
    const built = await check("npm run build (from clean: no stale dist/ files can be packed)", async () => {
      for (const name of PACKAGES) {
        await fs.rm(path.join(REPO, "packages", name, "dist"), { recursive: true, force: true });
        await fs.rm(path.join(REPO, "packages", name, "tsconfig.build.tsbuildinfo"), { force: true });
      }
      expectExit(await exec("npm", ["run", "build", "--silent"], { cwd: REPO, env: { ...process.env } }), "npm run build");
      return true;
    });
    if (built === undefined) return;
    const tarballs = await check("npm pack --workspaces (dist, README, LICENSE only)", async () => {
      const into = path.join(tmp, "tarballs");
      await fs.mkdir(into);
      return packAll(into);
    });
    if (tarballs === undefined) return;
    await check("@ocgw/cli alone: no dependencies, installs offline, runs", () => cliAlone(tarballs, tmp, cliVersion));
    await check(`node ${OLDEST_NODE_VERSION} from npm (node_modules/.cache/ocgw-node, first run only)`, installOldestNode);
    let first = true;
    for (const node of NODES) {
      const present = await fs.access(node.bin).then(() => true, () => false);
      if (!present) {
        failed += 1;
        log(`  FAIL ${node.label}: ${node.bin} is missing`);
        continue;
      }
      await exercise(node, tarballs, tmp, cliVersion, first);
      first = false;
    }
  } finally {
    if (process.env["OCGW_KEEP_TMP"] === "1") log(`kept ${tmp}`);
    else await fs.rm(tmp, { recursive: true, force: true });
    process.stdout.write(`packed install: ${passed} passed, ${failed} failed\n`);
  }
}

await main();
process.exitCode = failed > 0 ? 1 : 0;
