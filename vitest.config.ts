import { defineConfig } from "vitest/config";

// Two cores on the reference machine: a small fork pool keeps real-fs and child-process tests
// from starving each other. Tests never assert on wall-clock speed (that lives in `npm run bench`).
export default defineConfig({
  // Tests run the sources: each package's exports map "ocgw-source" to src/*.ts (no build needed);
  // the rest of the list is Vite's own default for server code. Children the tests spawn get the
  // same through `node --conditions=ocgw-source`.
  ssr: { resolve: { conditions: ["ocgw-source", "module", "node", "development|production"] } },
  test: {
    include: ["packages/*/test/**/*.test.ts"],
    // The real-OpenClaw suite has its own command (npm run test:openclaw, vitest.openclaw.config.ts).
    exclude: ["**/node_modules/**", "packages/*/test/openclaw/**"],
    pool: "forks",
    maxWorkers: 2,
    // The JSON report lets .ci/run print a plain "N passed, N failed" line.
    reporters: ["default", "json"],
    outputFile: { json: ".vitest-report.json" },
    testTimeout: 30_000,
    hookTimeout: 30_000,
    coverage: {
      provider: "v8",
      include: ["packages/*/src/**/*.ts"],
      reporter: ["text-summary", "text"],
      thresholds: {
        "packages/workspace/src/**": { lines: 90 },
      },
    },
  },
});
