import { spawn } from "node:child_process";
import { once } from "node:events";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it, onTestFinished } from "vitest";
import { probeOpenClawGateway, scanLegacyState } from "../../src/index.ts";
import { LATER, recordGenerated, seedWorkspace, sha256, tempOpenClaw } from "./openclaw-fixture.ts";

/** A child process that holds an exclusive SQLite transaction on `file`, as a running OpenClaw gateway holds its lifecycle lock. */
async function holdLock(file: string): Promise<{ pid: number; stop(): Promise<void> }> {
  const code = `const { DatabaseSync } = require("node:sqlite"); const db = new DatabaseSync(${JSON.stringify(file)}); db.exec("PRAGMA journal_mode = MEMORY; BEGIN EXCLUSIVE;"); process.stdout.write("held\\n"); setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ["-e", code], { stdio: ["ignore", "pipe", "inherit"] });
  const stop = async (): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill("SIGKILL");
    await once(child, "exit");
  };
  onTestFinished(stop);
  const [chunk] = (await once(child.stdout, "data")) as [Buffer];
  expect(chunk.toString()).toBe("held\n");
  return { pid: child.pid as number, stop };
}

async function ownStartTime(): Promise<number> {
  const stat = await fs.readFile(`/proc/${process.pid}/stat`, "utf8");
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]);
}

describe.runIf(process.platform === "linux")("a running OpenClaw gateway", () => {
  it("its held lifecycle lock stops the scan unless forced; the same file, released, does not", async () => {
    const fx = await tempOpenClaw();
    await seedWorkspace(fx, path.join(fx.stateDir, "workspace-orphan"));
    const uid = process.getuid?.() as number;
    const lockDir = path.join(fx.lockDir, `openclaw-state-locks-${uid}`);
    await fs.mkdir(lockDir);
    const lock = path.join(lockDir, `gateway-lifecycle.${sha256(path.join(fx.stateDir, "state", "openclaw.sqlite")).slice(0, 8)}.lock.sqlite`);
    const holder = await holdLock(lock);
    const probe = await probeOpenClawGateway(fx.stateDir, { runtimeDir: fx.lockDir });
    expect(probe).toEqual({ running: true, evidence: [`lifecycle lock ${lock} is held`] });
    const options = { dir: fx.stateDir, env: fx.env, homedir: fx.home, lockDir: fx.lockDir, now: LATER };
    await expect(scanLegacyState(options)).rejects.toMatchObject({ code: "LEGACY_GATEWAY_RUNNING", message: expect.stringContaining("Stop the OpenClaw gateway") });
    const forced = await scanLegacyState({ ...options, force: true });
    expect(forced.gatewayRunning).toEqual(probe.evidence);
    expect(forced.candidates.map((entry) => path.basename(entry.path))).toEqual(["workspace-orphan"]);
    await holder.stop();
    expect(await probeOpenClawGateway(fx.stateDir, { runtimeDir: fx.lockDir })).toEqual({ running: false, evidence: [] });
  });

  it("its JSON gateway lock counts only while that pid lives with the recorded start time", async () => {
    const fx = await tempOpenClaw();
    await recordGenerated(fx, await seedWorkspace(fx, path.join(fx.base, "ws"), { record: false }), {});
    const dir = path.join(fx.stateDir, "tmp", `openclaw-${process.getuid?.()}`);
    await fs.mkdir(dir, { recursive: true });
    const file = path.join(dir, "gateway.state.lock");
    const write = (lock: object) => fs.writeFile(file, `${JSON.stringify({ ownerId: "x", createdAt: new Date().toISOString(), stateDir: fx.stateDir, ...lock }, null, 2)}\n  token`.replace(/ {2}token$/, "   "));
    await write({ pid: process.pid, startTime: await ownStartTime() });
    expect((await probeOpenClawGateway(fx.stateDir, { runtimeDir: fx.lockDir })).evidence).toEqual([`gateway lock ${file}: pid ${process.pid} is alive`]);
    await write({ pid: process.pid, startTime: (await ownStartTime()) + 1 });
    expect((await probeOpenClawGateway(fx.stateDir, { runtimeDir: fx.lockDir })).running).toBe(false);
    const dead = spawn(process.execPath, ["-e", ""]);
    await once(dead, "exit");
    await write({ pid: dead.pid });
    expect((await probeOpenClawGateway(fx.stateDir, { runtimeDir: fx.lockDir })).running).toBe(false);
  });
});
