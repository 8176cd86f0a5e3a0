// Every script's command line: options through node:util's parseArgs,
// --help, checked values, and the exit codes (0 ok, 1 failure, 2 bad usage)
// with one line instead of a stack trace (wording: lib/errors.ts).
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";
import { describeError, isExpectedError } from "./errors.ts";
import { Failure, UsageError } from "./errors.ts";

export { Failure, UsageError };

/** `args` parsed against `options` and --help (prints `usage`, exits 0);
 * UsageError for unknown options, missing values, unwanted arguments. */
export function parseCommandLine<
  const Options extends ParseArgsOptionsConfig,
>(
  args: string[],
  { usage, options, positionals = false }: {
    usage: string;
    options: Options;
    positionals?: boolean;
  },
) {
  const help = { type: "boolean", short: "h" } as const;
  let parsed;
  try {
    const all = { ...options, help };
    parsed = parseArgs({ args, options: all, allowPositionals: true });
  } catch (error) {
    // parseArgs's messages are long and name its own API: keep the first
    // sentence, which names the option.
    const message = error instanceof Error ? error.message : String(error);
    const option = /Option '(--[\w-]+)[^']*' argument is ambiguous/
      .exec(message)?.[1];
    if (option) { // `--timeout -1`: a value that looks like an option
      throw new UsageError(
        `option '${option}' needs a value; for one starting with '-', write ${option}=VALUE`,
      );
    }
    throw new UsageError(
      message.split("\n")[0].split(". ")[0].replace(/\.$/, ""),
    );
  }
  if ((parsed.values as { help?: boolean }).help) {
    console.log(usage.trimEnd());
    Deno.exit(0);
  }
  if (!positionals && parsed.positionals.length > 0) {
    throw new UsageError(`unexpected argument '${parsed.positionals[0]}'`);
  }
  return parsed;
}

/** A string option with a default, as parseArgs takes it: `withDefault(8080)`.
 * Values stay strings until parsePort, parseInteger or parseSeconds. */
export const withDefault = (value: unknown) =>
  ({ type: "string", default: `${value}` }) as const;

export function parseInteger(
  value: string,
  name: string,
  min = 0,
  max = Number.MAX_SAFE_INTEGER,
): number {
  const number = /^\d+$/.test(value.trim()) ? Number(value.trim()) : NaN;
  if (!Number.isSafeInteger(number) || number < min || number > max) {
    throw new UsageError(
      `${name} must be a whole number from ${min} to ${max}, got '${value}'`,
    );
  }
  return number;
}

export function parsePort(value: string, name = "--port"): number {
  return parseInteger(value, name, 0, 65535);
}

/** Seconds above 0 (fractions allowed) up to a day; 0 too with `allowZero`. */
export function parseSeconds(
  value: string,
  name: string,
  allowZero = false,
): number {
  const seconds = /^\d+(\.\d+)?$/.test(value.trim()) ? Number(value) : NaN;
  if (!(seconds > 0 || (allowZero && seconds === 0)) || seconds > 86_400) {
    const floor = allowZero ? "0 or more" : "above 0";
    throw new UsageError(
      `${name} must be a number of seconds ${floor} (up to 86400), got '${value}'`,
    );
  }
  return seconds;
}

/** Splits `host:port` (or `[v6]:port`), as targets are written. */
export function parseHostAndPort(value: string, name: string) {
  const match = /^(?:\[([^\]]+)\]|([^:\s[\]]+)):(\d+)$/.exec(value.trim());
  if (!match) {
    throw new UsageError(`${name} must look like host:port, got '${value}'`);
  }
  return { hostname: match[1] ?? match[2], port: parsePort(match[3], name) };
}

/** Runs a script's main: UsageError exits 2 with a hint, an expected
 * failure 1 with one line; a bug keeps its stack trace, to be seen. */
export async function runCommand(
  scriptName: string,
  main: () => Promise<number | void> | number | void,
): Promise<void> {
  try {
    const code = await main();
    if (typeof code === "number") Deno.exit(code);
  } catch (error) {
    if (error instanceof UsageError) {
      console.error(`${scriptName}: ${error.message}`);
      console.error(`Try '${scriptName} --help' for more information.`);
      Deno.exit(2);
    }
    if (!isExpectedError(error)) throw error;
    console.error(`${scriptName}: ${describeError(error)}`);
    Deno.exit(1);
  }
}

/** UDP and QUIC exist only with --unstable-net; without it a call fails
 * with "is not a function". The UDP and QUIC scripts call this first. */
export function requireUnstableNet(what = "this"): void {
  if (typeof Deno.listenDatagram !== "function") {
    throw new Failure(
      `${what} needs Deno's --unstable-net flag: deno run --unstable-net --allow-net …`,
    );
  }
}
