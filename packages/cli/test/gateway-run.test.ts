import * as fs from "node:fs/promises";
import * as net from "node:net";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { leaseDirs, runCli, tempDir, waitFor } from "./helpers.ts";

describe("ocgw gateway run (in-process)", () => {
  it("prints exactly one ready line, serves calls, and stops cleanly (exit 0, workspaces released) when aborted", async () => {
    const t = await tempDir();
    const controller = new AbortController();
    let stdout = "";
    let stderr = "";
    const { run } = await import("../src/run.ts");
    const running = run(["gateway", "run", "--port", "0", "--state-dir", t.stateDir, "--token", "tok"], {
      stdout: { write: (chunk: string) => (stdout += chunk) },
      stderr: { write: (chunk: string) => (stderr += chunk) },
      env: t.env,
      cwd: t.dir,
      signal: controller.signal,
      exit: (code) => {
        throw new Error(`hard exit ${code}`);
      },
    });
    try {
      const url = await waitFor(() => /^ocgw gateway ready on (ws:\/\/127\.0\.0\.1:\d+) \(auth: token \(gateway\.auth\.token\); workspace\.implicit=ephemeral\)\n$/.exec(stdout)?.[1], "ready line", () => stderr);
      const chat = await runCli(["chat", "hello", "--session", "inproc", "--url", url, "--token", "tok"], { env: t.env });
      expect(chat.stdout).toBe("Echo: hello\n");
      expect(await leaseDirs(t.root)).toHaveLength(1);
    } finally {
      controller.abort();
    }
    expect(await running).toBe(0);
    expect(stdout.split("\n").filter((line) => line !== "")).toHaveLength(1);
    expect(stderr).toContain("[ocgw] ocgw gateway listening on");
    expect(await leaseDirs(t.root)).toEqual([]);
  });

  it("rejects bad flags with exit 2: --port out of range, --bind other than loopback|lan, unknown flags", async () => {
    const t = await tempDir();
    const port = await runCli(["gateway", "run", "--port", "70000"], { env: t.env });
    expect(port.code).toBe(2);
    expect(port.stderr).toContain("must be an integer from 0 to 65535");
    const bind = await runCli(["gateway", "run", "--bind", "everywhere"], { env: t.env });
    expect(bind.code).toBe(2);
    expect(bind.stderr).toContain("Allowed choices are loopback, lan");
    expect((await runCli(["gateway", "run", "--daemon"], { env: t.env })).code).toBe(2);
  });

  it('refuses --bind lan with auth mode "none" (exit 1, nothing listening, nothing written)', async () => {
    const t = await tempDir();
    await fs.writeFile(t.config, JSON.stringify({ gateway: { auth: { mode: "none" } } }));
    const result = await runCli(["gateway", "run", "--bind", "lan", "--port", "0", "--state-dir", t.stateDir, "--config", t.config], { env: t.env });
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toMatch(/^ocgw: gateway\.bind is "lan" .*set by flag --bind.*gateway\.auth\.mode is "none"/);
    await expect(fs.lstat(t.stateDir)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("a port in use fails with exit 1 and says how to fix it", async () => {
    const t = await tempDir();
    const server = net.createServer();
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    try {
      const port = (server.address() as net.AddressInfo).port;
      const result = await runCli(["gateway", "run", "--port", String(port), "--state-dir", t.stateDir, "--config", t.config], { env: t.env });
      expect(result.code).toBe(1);
      expect(result.stdout).toBe("");
      expect(result.stderr).toMatch(/^ocgw: .*EADDRINUSE.*\. Pass another --port \(0 picks a free one\)/);
      expect(await leaseDirs(t.root)).toEqual([]);
    } finally {
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });

  it("a config file that does not parse fails with exit 1 naming the line", async () => {
    const t = await tempDir();
    const config = path.join(t.dir, "bad.json5");
    await fs.writeFile(config, "{ gateway: { port: 1,, } }");
    const result = await runCli(["gateway", "run", "--config", config], { env: t.env });
    expect(result.code).toBe(1);
    expect(result.stderr).toMatch(/ocgw: The config file .*bad\.json5 is not valid JSON5: .* at line 1, column \d+/);
  });
});

describe("ocgw (top level)", () => {
  it("--help and --version exit 0; no command, an unknown command, or a group without a subcommand exit 2", async () => {
    const help = await runCli(["--help"]);
    expect(help.code).toBe(0);
    for (const command of ["gateway", "call", "chat", "sessions", "workspaces", "doctor"]) expect(help.stdout).toContain(command);
    const version = await runCli(["--version"]);
    expect(version).toMatchObject({ code: 0, stdout: "0.1.0\n" });
    expect((await runCli([])).code).toBe(2);
    const unknown = await runCli(["serve"]);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("ocgw: unknown command 'serve'");
    expect((await runCli(["workspaces"])).code).toBe(2);
  });
});
