import { defineConfig } from "vitest/config";

// `npm run test:openclaw`: the suite that runs the real OpenClaw 2026.9.6 (installed on first use
// into node_modules/.cache by the global setup). One file at a time: each starts real gateways,
// and the reference machine has two cores.
export default defineConfig({
  ssr: { resolve: { conditions: ["ocgw-source", "module", "node", "development|production"] } },
  test: {
    include: ["packages/*/test/openclaw/**/*.openclaw.test.ts"],
    globalSetup: ["packages/gateway/test/openclaw/install.ts"],
    pool: "forks",
    fileParallelism: false,
    // About 50 s and 100 s on an idle 2-core machine; the bound only turns a hang into a failure.
    testTimeout: 600_000,
    hookTimeout: 600_000,
    reporters: ["default", "json"],
    outputFile: { json: ".vitest-openclaw-report.json" },
  },
});
