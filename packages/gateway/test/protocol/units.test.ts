import { describe, expect, it } from "vitest";
import { z } from "zod";
import { evaluateConnect, secretsEqual, truncateCloseReason } from "../../src/protocol/handshake.ts";
import { defaultEventScope, formatIssues, hasScope, jsonPointer, startProtocolServer } from "../../src/protocol/index.ts";

describe("scopes", () => {
  it("implies read from write and everything from admin", () => {
    expect(hasScope(new Set(["operator.read"]), "operator.read")).toBe(true);
    expect(hasScope(new Set(["operator.read"]), "operator.write")).toBe(false);
    expect(hasScope(new Set(["operator.write"]), "operator.read")).toBe(true);
    expect(hasScope(new Set(["operator.write"]), "operator.admin")).toBe(false);
    expect(hasScope(new Set(["operator.admin"]), "operator.admin")).toBe(true);
    expect(hasScope(new Set(["operator.admin"]), "operator.read")).toBe(true);
    expect(hasScope(new Set(["operator.talk", "operator.approvals"]), "operator.read")).toBe(false);
    expect(hasScope(new Set(), "operator.read")).toBe(false);
  });

  it("gates run and session events on read, housekeeping on nothing", () => {
    expect(defaultEventScope("chat")).toBe("operator.read");
    expect(defaultEventScope("agent")).toBe("operator.read");
    expect(defaultEventScope("sessions.changed")).toBe("operator.read");
    expect(defaultEventScope("tick")).toBeNull();
    expect(defaultEventScope("shutdown")).toBeNull();
    expect(defaultEventScope("toString")).toBeNull();
  });
});

describe("validation text", () => {
  it("escapes JSON pointer segments", () => {
    expect(jsonPointer([])).toBe("");
    expect(jsonPointer(["a/b", "c~d", 0])).toBe("/a~1b/c~0d/0");
  });

  it("phrases root-level and array issues", () => {
    const schema = z.object({ list: z.array(z.object({ name: z.string() })) });
    const root = schema.safeParse("text");
    expect(root.success).toBe(false);
    expect(formatIssues(root.error?.issues ?? [], "text")).toBe("Invalid input: expected object, received string");
    const input = { list: [{ name: "a" }, {}] };
    const nested = schema.safeParse(input);
    expect(formatIssues(nested.error?.issues ?? [], input)).toBe("at /list/1: must have required property 'name'");
  });

  it("reports a present-but-null field as a type error, not a missing one", () => {
    const schema = z.object({ key: z.string() });
    const input = { key: null };
    const result = schema.safeParse(input);
    expect(formatIssues(result.error?.issues ?? [], input)).toBe("at /key: Invalid input: expected string, received null");
  });
});

describe("handshake helpers", () => {
  it("compares secrets of any length", () => {
    expect(secretsEqual("abc", "abc")).toBe(true);
    expect(secretsEqual("abc", "abd")).toBe(false);
    expect(secretsEqual("", "a-much-longer-secret")).toBe(false);
  });

  it("truncates close reasons to 123 bytes on a character boundary", () => {
    expect(truncateCloseReason("short")).toBe("short");
    const ascii = truncateCloseReason("x".repeat(200));
    expect(ascii).toBe("x".repeat(123));
    const multibyte = truncateCloseReason("é".repeat(100));
    expect(Buffer.byteLength(multibyte)).toBe(122);
    expect(multibyte).toBe("é".repeat(61));
  });

  it("accepts the token in either auth field when the other one is wrong", () => {
    const base = { minProtocol: 4, maxProtocol: 4, client: { id: "cli", mode: "cli" } };
    const auth = { mode: "token", token: "tkn" } as const;
    expect(evaluateConnect({ ...base, auth: { token: "wrong", password: "tkn" } }, auth).kind).toBe("accepted");
    expect(evaluateConnect({ ...base, auth: { token: "", password: "" } }, auth)).toMatchObject({ kind: "rejected", closeCode: 1008 });
    expect(evaluateConnect({ ...base }, { mode: "none" }).kind).toBe("accepted");
  });
});

describe("options", () => {
  it("rejects a limit that is not a positive integer", async () => {
    await expect(
      startProtocolServer({
        host: "127.0.0.1",
        port: 0,
        auth: { mode: "none" },
        methods: {},
        events: [],
        serverVersion: "x",
        snapshot: () => ({}),
        limits: { tickIntervalMs: 0 },
      }),
    ).rejects.toThrow(/limits\.tickIntervalMs must be a positive integer/);
  });
});
