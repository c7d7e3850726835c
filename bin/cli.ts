/**
 * The command line: subcommands with `--long value` options, parsed with Node's own
 * `util.parseArgs` (no argument-parsing library in the agent's memory). Options land in a record
 * keyed by their camelCase names (`--token-file` → `tokenFile`), which the config builders read.
 */
import { parseArgs } from "node:util";
import { ConfigError } from "./options.js";

export interface OptionSpec {
  /** The long name, kebab-case, without dashes. */
  name: string;
  /** What the value is, for the help text. */
  value: string;
  help: string;
  /** Takes every value up to the next option (`--allow-repository a b`); repeating it adds more. */
  variadic?: boolean;
}

export interface CommandSpec {
  name: string;
  description: string;
  options: OptionSpec[];
  run: (opts: Record<string, unknown>) => Promise<void>;
}

const camel = (kebab: string): string => kebab.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());

function optionLine(o: OptionSpec): string {
  const left = `  --${o.name} <${o.value}${o.variadic ? "..." : ""}>`;
  return `${left.padEnd(34)} ${o.help}`;
}

export function commandHelp(program: string, cmd: CommandSpec): string {
  return [
    `Usage: ${program} ${cmd.name} [options]`,
    "",
    cmd.description,
    "",
    "Options:",
    ...cmd.options.map(optionLine),
    `${"  -h, --help".padEnd(34)} show this help`,
  ].join("\n");
}

export function programHelp(program: string, description: string, commands: CommandSpec[]): string {
  return [
    `Usage: ${program} <command> [options]`,
    "",
    description,
    "",
    "Commands:",
    ...commands.map((c) => `  ${c.name.padEnd(14)} ${c.description}`),
    "",
    `Run '${program} <command> --help' for a command's options.`,
  ].join("\n");
}

/** Parses a command's arguments; every problem is reported at once as a ConfigError. */
export function parseCommandArgs(cmd: CommandSpec, args: string[]): Record<string, unknown> | "help" {
  const options: Record<string, { type: "string" | "boolean"; short?: string; multiple?: boolean }> = {
    help: { type: "boolean", short: "h" },
  };
  for (const o of cmd.options) options[o.name] = { type: "string", multiple: o.variadic === true };
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({ args, options, allowPositionals: true, strict: true, tokens: true });
  } catch (err) {
    const text = err instanceof Error ? err.message : String(err);
    // Node's message for an unknown option goes on about positionals; the option is what matters.
    const unknown = /^Unknown option '([^']+)'/.exec(text);
    const problem = unknown ? `unknown option '${unknown[1]}' (see --help)` : text;
    throw new ConfigError([`${cmd.name}: ${problem}`]);
  }
  if (parsed.values["help"] === true) return "help";
  const variadic = new Set(cmd.options.filter((o) => o.variadic).map((o) => o.name));
  const values: Record<string, unknown> = {};
  const problems: string[] = [];
  let collecting: string[] | null = null;
  for (const token of parsed.tokens ?? []) {
    if (token.kind === "option") {
      collecting = null;
      if (token.name === "help") continue;
      const key = camel(token.name);
      if (variadic.has(token.name)) {
        const list = (values[key] as string[] | undefined) ?? [];
        if (token.value !== undefined) list.push(token.value);
        values[key] = list;
        collecting = list;
      } else {
        values[key] = token.value;
      }
    } else if (token.kind === "positional") {
      if (collecting) collecting.push(token.value);
      else problems.push(`${cmd.name}: unexpected argument '${token.value}'`);
    }
  }
  if (problems.length > 0) throw new ConfigError(problems);
  return values;
}
