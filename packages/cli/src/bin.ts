#!/usr/bin/env node
// The `ocgw` bin. Deliberately plain JavaScript with no type annotations and no static imports,
// so that any Node parses it: it checks the version first and prints ONE line (no stack trace) on
// a Node too old for the CLI, whose modules would otherwise fail to load with a stack trace.
// MINIMUM_NODE matches every package's `engines.node` (a test checks it): 22.16.0 is the first
// Node with `node:sqlite` unflagged plus DatabaseSync's `isTransaction` and `timeout` option.
const MINIMUM_NODE = "22.16.0";

const found = process.versions.node.split(".").map(Number);
const needed = MINIMUM_NODE.split(".").map(Number);
let tooOld = false;
for (let i = 0; i < needed.length; i += 1) {
  const have = found[i] || 0;
  const want = needed[i] || 0;
  if (have !== want) {
    tooOld = have < want;
    break;
  }
}

if (tooOld) {
  process.stderr.write("ocgw: needs Node.js >= " + MINIMUM_NODE + ", found " + process.version + "\n");
  process.exitCode = 1;
} else {
  import("./main.ts").catch(function (error) {
    process.stderr.write(error && error.stack ? error.stack + "\n" : "ocgw: " + String(error) + "\n");
    process.exitCode = 1;
  });
}
