#!/usr/bin/env node
// The `ocgw` bin. Deliberately plain JavaScript with no type annotations and no static imports,
// so that any Node parses it: it checks the version first and prints ONE line (no stack trace) on
// a Node the CLI does not support, whose modules would otherwise fail with a stack trace.
// SUPPORTED_NODE is every package's `engines.node` (a test checks it): 22.16.0 is the first 22.x
// with `node:sqlite` unflagged plus DatabaseSync's `isTransaction` and `timeout` option; 23.x
// never got `isTransaction` (it came with 24.0.0).
const SUPPORTED_NODE = "^22.16.0 || >=24.0.0";

const parts = process.versions.node.split(".").map(Number);
const major = parts[0] || 0;
const minor = parts[1] || 0;
const supported = (major === 22 && minor >= 16) || major >= 24;

if (!supported) {
  process.stderr.write("ocgw: needs Node.js " + SUPPORTED_NODE + ", found " + process.version + "\n");
  process.exitCode = 1;
} else {
  import("./main.ts").catch(function (error) {
    process.stderr.write(error && error.stack ? error.stack + "\n" : "ocgw: " + String(error) + "\n");
    process.exitCode = 1;
  });
}
