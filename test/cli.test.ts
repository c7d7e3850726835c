import assert from "node:assert/strict";
import { test } from "node:test";
import { commandHelp, parseCommandArgs, type CommandSpec } from "../bin/cli.js";
import { COORDINATOR_OPTIONS } from "../bin/coordinator-command.js";
import { ConfigError } from "../bin/options.js";

const cmd: CommandSpec = {
  name: "coordinator",
  description: "test",
  options: [...COORDINATOR_OPTIONS],
  run: () => Promise.resolve(),
};

test("options land under camelCase names; a variadic option takes values up to the next option", () => {
  const opts = parseCommandArgs(cmd, [
    "--listen",
    "127.0.0.1:0",
    "--allow-repository",
    "https://a.example/",
    "https://b.example/",
    "--agent-token-file=/run/token",
    "--allow-repository",
    "ssh://c.example/",
  ]);
  assert.deepEqual(opts, {
    listen: "127.0.0.1:0",
    allowRepository: ["https://a.example/", "https://b.example/", "ssh://c.example/"],
    agentTokenFile: "/run/token",
  });
});

test("unknown options, stray arguments and missing values are configuration errors", () => {
  const problem = (args: string[]) => {
    try {
      parseCommandArgs(cmd, args);
    } catch (err) {
      assert.ok(err instanceof ConfigError);
      return err.message;
    }
    return assert.fail("no error");
  };
  assert.match(problem(["--bogus", "1"]), /unknown option '--bogus'/);
  assert.match(problem(["stray"]), /unexpected argument 'stray'/);
  assert.match(problem(["--listen"]), /--listen/);
});

test("--help asks for the help text, which lists every option", () => {
  assert.equal(parseCommandArgs(cmd, ["--listen", "x", "-h"]), "help");
  const help = commandHelp("phab-dock-ci", cmd);
  for (const o of COORDINATOR_OPTIONS) assert.match(help, new RegExp(`--${o.name} <`));
});
