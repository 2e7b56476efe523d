import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { workspaceErrorCatalog } from "@ocgw/workspace";
import { describe, expect, it } from "vitest";
import { gatewayErrorCatalog } from "../src/errors.ts";

const doc = readFileSync(fileURLToPath(new URL("../../../docs/errors.md", import.meta.url)), "utf8");

/** Rows of the table under a `## heading`: code → the remaining cells. */
function table(heading: string): Map<string, string[]> {
  const section = doc.split(/^## /m).find((part) => part.startsWith(heading));
  if (section === undefined) throw new Error(`docs/errors.md has no "## ${heading}" section`);
  const rows = new Map<string, string[]>();
  for (const line of section.split("\n")) {
    const match = /^\| `([A-Z_]+)` \|(.*)\|$/.exec(line);
    if (match?.[1] === undefined || match[2] === undefined) continue;
    rows.set(match[1], match[2].split(/(?<!\\)\|/).map((cell) => cell.trim().replace(/\\\|/g, "|")));
  }
  return rows;
}

describe("docs/errors.md matches the error catalogues", () => {
  it("lists every @ocgw/workspace code with its meaning and fix, and nothing stale", () => {
    const rows = table("@ocgw/workspace");
    expect([...rows.keys()].sort()).toEqual(Object.keys(workspaceErrorCatalog).sort());
    for (const [code, info] of Object.entries(workspaceErrorCatalog)) expect(rows.get(code), code).toEqual([info.meaning, info.fix]);
  });

  it("lists every @ocgw/gateway code with its wire code, meaning and fix, and nothing stale", () => {
    const rows = table("@ocgw/gateway");
    expect([...rows.keys()].sort()).toEqual(Object.keys(gatewayErrorCatalog).sort());
    for (const [code, info] of Object.entries(gatewayErrorCatalog)) expect(rows.get(code), code).toEqual([`\`${info.wire}\``, info.meaning, info.fix]);
  });
});
