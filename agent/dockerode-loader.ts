/**
 * Loads dockerode without the transports this agent never uses. dockerode requires, at load time,
 * gRPC (for BuildKit sessions, used only with `version: "2"` builds) and ssh2 (for `ssh://` engine
 * hosts); together they are about half of an idle agent's memory above Node.js itself. Both modules
 * are registered here as stand-ins that load the real module on first call, so nothing is lost if
 * either is ever used.
 */
import { createRequire, Module } from "node:module";
import type Dockerode from "dockerode";

type DockerodeConstructor = new (options?: Dockerode.DockerOptions) => Dockerode;

const require = createRequire(import.meta.url);
let loaded: DockerodeConstructor | null = null;

/** Puts a stand-in for the CommonJS module at `file` (which exports one function) into the cache. */
function deferModule(file: string): void {
  if (require.cache[file]) return;
  const stub = new Module(file);
  stub.filename = file;
  stub.loaded = true;
  stub.exports = function deferred(this: unknown, ...args: unknown[]): unknown {
    if (require.cache[file] === stub) Reflect.deleteProperty(require.cache, file);
    const real = require(file) as (...a: unknown[]) => unknown;
    return real.apply(this, args);
  };
  require.cache[file] = stub;
}

export function loadDockerode(): DockerodeConstructor {
  if (loaded) return loaded;
  const dockerodeMain = require.resolve("dockerode");
  const fromDockerode = createRequire(dockerodeMain);
  const fromModem = createRequire(fromDockerode.resolve("docker-modem"));
  // Each is `module.exports = function …`: dockerode/lib/session.js (gRPC), docker-modem/lib/ssh.js.
  deferModule(fromDockerode.resolve("./session.js"));
  deferModule(fromModem.resolve("./ssh.js"));
  loaded = require(dockerodeMain) as DockerodeConstructor;
  return loaded;
}
