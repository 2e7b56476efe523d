import { spawn } from "node:child_process";
import { existsSync } from "node:fs";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { GatewayError } from "../../src/errors.ts";
import { type AgentRunner, type CommandRunnerOptions, createCommandRunner } from "../../src/runners/index.ts";
import {
  type EscapeKind,
  cwdOf,
  environNames,
  escapeScript,
  isGone,
  killLeftovers,
  makeInput,
  makeTempDir,
  pause,
  processGroupOf,
  rejection,
  removeTempDir,
  waitFor,
  writeLeaseMarker,
} from "./helpers.ts";

const node = process.execPath;

describe.skipIf(process.platform === "win32")("command runner", () => {
  let dir: string | undefined;
  const runners: AgentRunner[] = [];
  const pids = new Set<number>();

  beforeEach(async () => {
    dir = await makeTempDir();
  });

  afterEach(async () => {
    await Promise.all(runners.splice(0).map((runner) => runner.close()));
    killLeftovers(pids);
    pids.clear();
    await removeTempDir(dir);
    dir = undefined;
  });

  function runner(options: CommandRunnerOptions): AgentRunner {
    const created = createCommandRunner(options);
    runners.push(created);
    return created;
  }

  /** Collects the numbers the script prints on its first line (its `$$`, `$!`, …) once they arrive. */
  function firstLinePids(deltas: string[], count: number): Promise<number[]> {
    return waitFor(() => deltas.join("").includes("\n"), 10_000, "the first line of output").then(() => {
      const numbers = (deltas.join("").split("\n")[0] ?? "").trim().split(/\s+/).map(Number);
      expect(numbers).toHaveLength(count);
      for (const pid of numbers) {
        expect(Number.isInteger(pid) && pid > 1).toBe(true);
        pids.add(pid);
      }
      return numbers;
    });
  }

  /** Checks that each escaped process really left: another process group, and for some the cwd or the environment too. */
  async function expectEscaped(shell: number, escaped: readonly number[], kinds: readonly EscapeKind[]): Promise<void> {
    for (const [index, kind] of kinds.entries()) {
      const pid = escaped[index] as number;
      expect(isGone(pid), `${kind} ${pid} runs`).toBe(false);
      expect(processGroupOf(pid), `${kind} ${pid} left the group`).not.toBe(shell);
      if (kind.endsWith("out")) await waitFor(() => cwdOf(pid) === "/", 10_000, `${kind} to chdir to /`);
      else expect(cwdOf(pid), `${kind} ${pid} cwd`).toBe(await fs.realpath(dir as string));
      if (kind.includes("cleared-env")) expect(environNames(pid).filter((name) => name.startsWith("OCGW_")), `${kind} ${pid} environment`).toEqual([]);
    }
  }

  it("writes the message to stdin and streams stdout as deltas", async () => {
    const { input, deltas } = makeInput({ message: "hi there\nsecond line\n" });
    const output = await runner({ argv: ["sh", "-c", "cat; echo done"] }).run(input);
    expect(output).toEqual({ text: "hi there\nsecond line\ndone\n", stopReason: "stop" });
    expect(deltas.length).toBeGreaterThan(0);
    expect(deltas.join("")).toBe(output.text);
  });

  it("runs in the workspace with OCGW_* and the configured env set", async () => {
    const workspace = dir as string;
    const { input } = makeInput({ cwd: workspace, sessionKey: "agent:main:env", runId: "run-env" });
    const script = 'pwd; printf "%s|%s|%s|%s\\n" "$OCGW_SESSION_KEY" "$OCGW_RUN_ID" "$OCGW_WORKSPACE" "$EXTRA_SETTING"';
    const output = await runner({ argv: ["sh", "-c", script], env: { EXTRA_SETTING: "from config" } }).run(input);
    const [pwd, vars] = output.text.split("\n");
    expect(await fs.realpath(pwd ?? "")).toBe(await fs.realpath(workspace));
    expect(vars).toBe(`agent:main:env|run-env|${workspace}|from config`);
  });

  it("withholds the gateway's own OCGW_GATEWAY_TOKEN from a run, and passes the rest of its environment", async () => {
    const saved = process.env["OCGW_GATEWAY_TOKEN"];
    process.env["OCGW_GATEWAY_TOKEN"] = "the-gateway-secret";
    process.env["OCGW_TEST_INHERITED"] = "inherited";
    try {
      const output = await runner({ argv: ["sh", "-c", 'printf "[%s][%s]" "${OCGW_GATEWAY_TOKEN-unset}" "$OCGW_TEST_INHERITED"'] }).run(makeInput().input);
      expect(output.text).toBe("[unset][inherited]");
    } finally {
      if (saved === undefined) delete process.env["OCGW_GATEWAY_TOKEN"];
      else process.env["OCGW_GATEWAY_TOKEN"] = saved;
      delete process.env["OCGW_TEST_INHERITED"];
    }
  });

  it("runs in / with an empty OCGW_WORKSPACE when there is no workspace", async () => {
    const { input } = makeInput({ cwd: null });
    const output = await runner({ argv: ["sh", "-c", 'pwd; printf "[%s]" "$OCGW_WORKSPACE"'] }).run(input);
    expect(output.text).toBe("/\n[]");
  });

  it("keeps multi-byte characters intact across stdout chunk boundaries", async () => {
    // Writes "é🦀" one byte at a time, 20 ms apart, so each byte arrives in its own chunk.
    const script = `const bytes = Buffer.from("aé🦀z"); let i = 0; const next = () => { if (i < bytes.length) process.stdout.write(bytes.subarray(i, ++i), () => setTimeout(next, 20)); }; next();`;
    const { input, deltas } = makeInput();
    const output = await runner({ argv: [node, "-e", script] }).run(input);
    expect(output.text).toBe("aé🦀z");
    expect(deltas.join("")).toBe("aé🦀z");
    expect(deltas.some((delta) => delta.includes("\uFFFD"))).toBe(false);
    expect(deltas.length).toBeGreaterThan(1);
  });

  it("rejects a non-zero exit with RUNNER_FAILED naming the program, the code and the stderr tail", async () => {
    const { input } = makeInput();
    const error = await rejection(runner({ argv: ["sh", "-c", 'echo partial; echo "first problem" >&2; echo "it broke" >&2; exit 3'] }).run(input));
    expect(error).toBeInstanceOf(GatewayError);
    expect(error.code).toBe("RUNNER_FAILED");
    expect(error.message).toContain('"sh" exited with code 3');
    expect(error.message).toContain("first problem\nit broke");
    expect(error.details).toMatchObject({ program: "sh", exitCode: 3, signal: null });
  });

  it("keeps only the last 4 KiB of stderr", async () => {
    const script = `process.stderr.write("HEAD" + "x".repeat(10000) + "TAIL", () => process.exit(2));`;
    const error = await rejection(runner({ argv: [node, "-e", script] }).run(makeInput().input));
    expect(error.code).toBe("RUNNER_FAILED");
    expect(error.message).toContain("TAIL");
    expect(error.message).not.toContain("HEAD");
    const stderr = error.details?.["stderr"] as string;
    expect(stderr.endsWith("xTAIL")).toBe(true);
    expect(Buffer.byteLength(stderr)).toBeLessThanOrEqual(4096);
  });

  it("reports a program killed by a signal", async () => {
    const error = await rejection(runner({ argv: ["sh", "-c", "kill -9 $$"] }).run(makeInput().input));
    expect(error.code).toBe("RUNNER_FAILED");
    expect(error.message).toContain("killed by SIGKILL");
  });

  it("rejects a missing program with RUNNER_FAILED naming it", async () => {
    const { input, deltas } = makeInput();
    const error = await rejection(runner({ argv: ["ocgw-no-such-program-xyz", "--flag"] }).run(input));
    expect(error).toBeInstanceOf(GatewayError);
    expect(error.code).toBe("RUNNER_FAILED");
    expect(error.message).toContain("ocgw-no-such-program-xyz");
    expect(error.message).toContain("ENOENT");
    expect(deltas).toEqual([]);
  });

  it("copes with a program that exits without reading a large message", async () => {
    const { input } = makeInput({ message: "m".repeat(4 * 1024 * 1024) });
    const output = await runner({ argv: ["sh", "-c", "echo ok"] }).run(input);
    expect(output.text).toBe("ok\n");
  });

  it("on abort kills the shell and its background child, then rejects with the reason", async () => {
    const { input, deltas, controller } = makeInput({ cwd: dir as string });
    const pending = rejection(runner({ argv: ["sh", "-c", 'sleep 30 & echo "$$ $!"; sleep 30; wait'] }).run(input));
    const [shell, background] = (await firstLinePids(deltas, 2)) as [number, number];
    expect(isGone(shell)).toBe(false);
    expect(isGone(background)).toBe(false);
    const reason = new Error("chat.abort");
    controller.abort(reason);
    expect(await pending).toBe(reason);
    expect(isGone(shell)).toBe(true);
    expect(isGone(background)).toBe(true);
    expect(deltas.join("")).toBe(`${shell} ${background}\n`);
  });

  it("an abort as the shell exits still kills the job it left behind: one /proc scan is a consistent snapshot", async () => {
    // The shell starts a job from a subshell and exits at once. A scan that listed /proc while the
    // shell lived and read it after the shell died saw neither, and the abort left the job running.
    const script = `(sh -c 'echo $$ > "$OCGW_RUN_ID.pid"; exec sleep 30' </dev/null >/dev/null 2>&1 &); echo started`;
    const shared = runner({ argv: ["sh", "-c", script] });
    for (let attempt = 0; attempt < 30; attempt += 1) {
      const { input, controller } = makeInput({ runId: `race-${attempt}`, cwd: dir as string });
      const pending = rejection(shared.run(input));
      await new Promise((resolve) => setImmediate(resolve));
      const reason = new Error("chat.abort");
      controller.abort(reason);
      expect(await pending).toBe(reason);
      const file = path.join(dir as string, `race-${attempt}.pid`);
      // Killed before it wrote its pid is killed too; a job that lives writes it within milliseconds.
      const written = await waitFor(() => existsSync(file), 1000, file).then(() => true, () => false);
      if (!written) continue;
      const job = Number(await fs.readFile(file, "utf8"));
      pids.add(job);
      expect(isGone(job), `attempt ${attempt}: job ${job} outlived the abort`).toBe(true);
    }
  });

  it("SIGKILLs a group that ignores SIGTERM once killGraceMs has passed", async () => {
    const { input, deltas, controller } = makeInput();
    const pending = rejection(runner({ argv: ["sh", "-c", 'trap "" TERM; sleep 30 & echo "$$ $!"; wait'], killGraceMs: 1000 }).run(input));
    const [shell, background] = (await firstLinePids(deltas, 2)) as [number, number];
    const stoppedAt = Date.now();
    controller.abort(new Error("stop"));
    await pause(200);
    // SIGTERM has been sent and ignored: both still run inside the grace period.
    expect(isGone(shell)).toBe(false);
    expect(isGone(background)).toBe(false);
    expect((await pending).message).toBe("stop");
    expect(Date.now() - stoppedAt).toBeGreaterThanOrEqual(950);
    expect(isGone(shell)).toBe(true);
    expect(isGone(background)).toBe(true);
  });

  it("turns a TimeoutError reason into RUNNER_TIMEOUT and kills the program", async () => {
    const deltas: string[] = [];
    const { input } = makeInput({ signal: AbortSignal.timeout(1500), onDelta: (text) => deltas.push(text) });
    const pending = rejection(runner({ argv: ["sh", "-c", 'echo "$$"; sleep 30'] }).run(input));
    const [shell] = (await firstLinePids(deltas, 1)) as [number];
    const error = await pending;
    expect(error).toBeInstanceOf(GatewayError);
    expect(error.code).toBe("RUNNER_TIMEOUT");
    expect(isGone(shell)).toBe(true);
  });

  it("killSession kills every run of that session and none of another's", async () => {
    const shared = runner({ argv: ["sh", "-c", 'sleep 30 & echo "$$ $!"; wait'] });
    const a1 = makeInput({ sessionKey: "agent:main:a", runId: "a1" });
    const a2 = makeInput({ sessionKey: "agent:main:a", runId: "a2" });
    const b = makeInput({ sessionKey: "agent:main:b", runId: "b1" });
    // Observed from the start, so that their rejections are never unhandled.
    const [a1Error, a2Error, bError] = [a1, a2, b].map((test) => rejection(shared.run(test.input))) as [
      ReturnType<typeof rejection>,
      ReturnType<typeof rejection>,
      ReturnType<typeof rejection>,
    ];
    const [a1Pids, a2Pids, bPids] = await Promise.all([firstLinePids(a1.deltas, 2), firstLinePids(a2.deltas, 2), firstLinePids(b.deltas, 2)]);
    await shared.killSession("agent:main:a");
    // Resolved only once they are gone.
    for (const pid of [...a1Pids, ...a2Pids]) expect(isGone(pid), `pid ${pid}`).toBe(true);
    for (const pid of bPids) expect(isGone(pid), `pid ${pid}`).toBe(false);
    for (const pending of [a1Error, a2Error]) {
      const error = await pending;
      expect(error.code).toBe("RUNNER_ABORTED");
      expect(error.message).toContain("agent:main:a");
    }
    await shared.killSession("agent:main:nobody");
    expect(isGone(bPids[0] as number)).toBe(false);
    await shared.killSession("agent:main:b");
    expect((await bError).code).toBe("RUNNER_ABORTED");
    for (const pid of bPids) expect(isGone(pid)).toBe(true);
  });

  it("killSession also reaches a background job that outlived its run", async () => {
    const shared = runner({ argv: ["sh", "-c", 'sleep 30 >/dev/null 2>&1 & echo "$!"'] });
    const mine = await shared.run(makeInput({ sessionKey: "agent:main:bg" }).input);
    const other = await shared.run(makeInput({ sessionKey: "agent:main:other" }).input);
    const [job, otherJob] = [Number(mine.text.trim()), Number(other.text.trim())];
    pids.add(job).add(otherJob);
    expect(isGone(job)).toBe(false);
    await shared.killSession("agent:main:bg");
    expect(isGone(job)).toBe(true);
    expect(isGone(otherJob)).toBe(false);
    await shared.close();
    expect(isGone(otherJob)).toBe(true);
  });

  it("close kills everything, is idempotent and refuses later runs", async () => {
    const shared = runner({ argv: ["sh", "-c", 'echo "$$"; sleep 30'] });
    const test = makeInput();
    const pending = rejection(shared.run(test.input));
    const [shell] = (await firstLinePids(test.deltas, 1)) as [number];
    await Promise.all([shared.close(), shared.close()]);
    expect(isGone(shell)).toBe(true);
    expect((await pending).code).toBe("RUNNER_ABORTED");
    await shared.close();
    const later = makeInput();
    expect((await rejection(shared.run(later.input))).code).toBe("RUNNER_ABORTED");
  });

  it("does not start anything when the signal has already aborted", async () => {
    const marker = path.join(dir as string, "started");
    const controller = new AbortController();
    controller.abort(new Error("too late"));
    const { input } = makeInput({ signal: controller.signal });
    expect((await rejection(runner({ argv: ["sh", "-c", `touch '${marker}'`] }).run(input))).message).toBe("too late");
    await pause(100);
    await expect(fs.stat(marker)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("stops the program when onDelta throws", async () => {
    const { input } = makeInput();
    const failure = new Error("client went away");
    const deltas: string[] = [];
    const pending = rejection(
      runner({ argv: ["sh", "-c", 'echo "$$"; sleep 30'] }).run({
        ...input,
        onDelta: (text) => {
          deltas.push(text);
          throw failure;
        },
      }),
    );
    expect(await pending).toBe(failure);
    const shell = Number(deltas.join("").trim());
    pids.add(shell);
    expect(isGone(shell)).toBe(true);
  });

  const ESCAPE = "regression: processes escaped their workspace (setsid / double fork)";

  it.skipIf(process.platform !== "linux")(`${ESCAPE}: abort kills every descendant of the run, in its group or not`, async () => {
    const kinds = ["setsid", "double-fork", "chdir-out", "child-cleared-env-out"] as const;
    const { input, deltas, controller } = makeInput({ cwd: dir as string });
    const pending = rejection(runner({ argv: ["sh", "-c", escapeScript(kinds, "sleep 300")] }).run(input));
    const [shell, ...escaped] = (await firstLinePids(deltas, 1 + kinds.length)) as [number, ...number[]];
    await expectEscaped(shell, escaped, kinds);
    const reason = new Error("chat.abort");
    controller.abort(reason);
    expect(await pending).toBe(reason);
    expect(isGone(shell)).toBe(true);
    for (const [index, kind] of kinds.entries()) expect(isGone(escaped[index] as number), `${kind} ${escaped[index]}`).toBe(true);
  });

  it.skipIf(process.platform !== "linux")(`${ESCAPE}: killSession reaches escaped processes after their run ended`, async () => {
    const kinds = ["double-fork", "chdir-out"] as const;
    const shared = runner({ argv: ["sh", "-c", escapeScript(kinds, "")] });
    const mine = makeInput({ cwd: dir as string, sessionKey: "agent:main:escape" });
    await shared.run(mine.input);
    const [shell, ...escaped] = (await firstLinePids(mine.deltas, 1 + kinds.length)) as [number, ...number[]];
    await expectEscaped(shell, escaped, kinds);
    await shared.killSession("agent:main:escape");
    for (const [index, kind] of kinds.entries()) expect(isGone(escaped[index] as number), `${kind} ${escaped[index]}`).toBe(true);
  });

  it.skipIf(process.platform !== "linux")(`${ESCAPE}: killSession kills a process that cleared its environment but stayed in the session's lease directory`, async () => {
    await writeLeaseMarker(dir as string, "agent:main:lease");
    const kinds = ["cleared-env"] as const;
    const shared = runner({ argv: ["sh", "-c", escapeScript(kinds, "")] });
    const mine = makeInput({ cwd: dir as string, sessionKey: "agent:main:lease" });
    await shared.run(mine.input);
    const [shell, cleared] = (await firstLinePids(mine.deltas, 2)) as [number, number];
    await expectEscaped(shell, [cleared], kinds);
    await shared.killSession("agent:main:lease");
    expect(isGone(cleared)).toBe(true);
  });

  it.skipIf(process.platform !== "linux")("killSession spares a process that is not the run's, even with its cwd in the workspace", async () => {
    const workspace = dir as string;
    // A lease marker of another session: the directory is not this session's to empty.
    await writeLeaseMarker(workspace, "agent:main:someone-else");
    const shared = runner({ argv: ["sh", "-c", "echo $$"] });
    const mine = makeInput({ cwd: workspace, sessionKey: "agent:main:kept" });
    await shared.run(mine.input);
    // Started after the run, in its workspace, by someone else (this test), without a run token.
    const { OCGW_RUN_TOKEN: _token, ...env } = process.env;
    const bystander = spawn("sleep", ["300"], { cwd: workspace, env, stdio: "ignore" });
    const pid = bystander.pid as number;
    pids.add(pid);
    const exited = new Promise((resolve) => bystander.once("exit", resolve));
    await shared.killSession("agent:main:kept");
    expect(isGone(pid)).toBe(false);
    await shared.run(makeInput({ cwd: workspace, sessionKey: "agent:main:kept" }).input);
    await shared.close();
    expect(isGone(pid)).toBe(false);
    bystander.kill("SIGKILL");
    await exited;
  });
});
