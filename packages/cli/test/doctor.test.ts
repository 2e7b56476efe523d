import * as fs from "node:fs/promises";
import * as path from "node:path";
import { describe, expect, it } from "vitest";
import { TOKEN, runCli, startTestGateway, tempDir } from "./helpers.ts";

interface DoctorJson {
  ok: boolean;
  checks: { status: string; check: string; detail: string }[];
}

function lines(stdout: string): Map<string, string> {
  return new Map(
    stdout
      .trimEnd()
      .split("\n")
      .map((line) => {
        const match = /^(ok|warn|fail)\s+(\S+)\s+(.*)$/.exec(line);
        if (match === null) throw new Error(`not a check line: ${JSON.stringify(line)}`);
        return [match[2] as string, `${match[1]} ${match[3]}`];
      }),
  );
}

describe("ocgw doctor", () => {
  it("a healthy setup (after a gateway ran) passes every check: exit 0", async () => {
    const t = await tempDir();
    const gateway = await startTestGateway(t);
    await runCli(["chat", "hi", "--url", gateway.url, "--token", TOKEN], { env: t.env });
    const result = await runCli(["doctor", "--state-dir", t.stateDir], { env: t.env });
    expect(result.code).toBe(0);
    const checks = lines(result.stdout);
    expect([...checks.keys()]).toEqual(["config", "state-dir", "ephemeral-root", "free-space", "store", "orphans"]);
    expect(checks.get("config")).toBe(`ok ${t.config} loads`);
    expect(checks.get("ephemeral-root")).toBe(`ok ${t.root} is a directory of this user, mode 0700`);
    expect(checks.get("store")).toMatch(/^ok .*ocgw\.sqlite opens, schema version 2$/);
    expect(checks.get("orphans")).toBe("ok 0 reclaimable, 0 reported (not provably ours), 1 live");
  });

  it("a fresh install (nothing created yet) is healthy with a warning, and the doctor creates nothing", async () => {
    const t = await tempDir();
    const result = await runCli(["doctor", "--json", "--state-dir", t.stateDir], { env: t.env });
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout) as DoctorJson;
    expect(report.ok).toBe(true);
    expect(report.checks.find((check) => check.check === "state-dir")?.status).toBe("warn");
    await expect(fs.lstat(t.stateDir)).rejects.toMatchObject({ code: "ENOENT" });
    await expect(fs.lstat(t.root)).rejects.toMatchObject({ code: "ENOENT" });
  });

  it("an ephemeral root that is a symlink is a fail line and exit 1", async () => {
    const t = await tempDir();
    const target = path.join(t.dir, "target");
    await fs.mkdir(target, { mode: 0o700 });
    await fs.symlink(target, t.root);
    await fs.mkdir(t.stateDir);
    const result = await runCli(["doctor", "--state-dir", t.stateDir], { env: t.env });
    expect(result.code).toBe(1);
    const checks = lines(result.stdout);
    expect(checks.get("ephemeral-root")).toMatch(/^fail .* is a symlink; the gateway refuses it/);
    expect(checks.get("state-dir")).toMatch(/^ok /);
  });

  it("warns about a loose root mode and orphans, fails on a config that does not load", async () => {
    const t = await tempDir();
    await fs.mkdir(t.root, { mode: 0o755 });
    await fs.chmod(t.root, 0o755);
    await fs.mkdir(path.join(t.root, "not-ours"));
    const loose = await runCli(["doctor", "--json", "--state-dir", t.stateDir], { env: t.env });
    const report = JSON.parse(loose.stdout) as DoctorJson;
    expect(loose.code).toBe(0);
    expect(report.checks.find((check) => check.check === "ephemeral-root")).toMatchObject({ status: "warn" });
    expect(report.checks.find((check) => check.check === "ephemeral-root")?.detail).toContain("mode 0755");
    await fs.chmod(t.root, 0o700);
    const orphans = JSON.parse((await runCli(["doctor", "--json", "--state-dir", t.stateDir], { env: t.env })).stdout) as DoctorJson;
    expect(orphans.checks.find((check) => check.check === "orphans")).toMatchObject({ status: "warn" });
    expect(orphans.checks.find((check) => check.check === "orphans")?.detail).toContain("1 reported (not provably ours: no marker)");

    await fs.writeFile(t.config, "{ gateway: { port: 'high' } }");
    const broken = await runCli(["doctor", "--state-dir", t.stateDir], { env: t.env });
    expect(broken.code).toBe(1);
    expect(broken.stdout).toMatch(/^fail\s+config\s+.*gateway\.port/);
  });

  it("an unknown flag is a usage error: exit 2", async () => {
    const t = await tempDir();
    expect((await runCli(["doctor", "--fix"], { env: t.env })).code).toBe(2);
  });
});
