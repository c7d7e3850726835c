/**
 * Imports the modules named on the command line (package names, or files of dist/ given relative
 * to it) and prints the process's memory afterwards, after a full GC: what loading code costs.
 * Run with --expose-gc, one fresh process per measurement.
 */
import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

// Not taken from child.js: this process should load nothing it is not asked to.
const DIST = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");

async function main(): Promise<void> {
  for (const spec of process.argv.slice(2)) {
    const mod = (await import(spec.endsWith(".js") ? pathToFileURL(join(DIST, spec)).href : spec)) as {
      loadDockerode?: () => unknown;
    };
    // The agent loads dockerode when it creates its Docker backend, through this loader.
    mod.loadDockerode?.();
  }
  const gc = (globalThis as { gc?: () => void }).gc;
  gc?.();
  await new Promise((r) => setTimeout(r, 300));
  gc?.();
  const m = process.memoryUsage();
  process.stdout.write(`${JSON.stringify({ ev: "memory", rss: m.rss, heapUsed: m.heapUsed })}\n`);
  process.exit(0);
}

main().catch((err: unknown) => {
  console.error(`import-cost: ${String(err)}`);
  process.exit(1);
});
