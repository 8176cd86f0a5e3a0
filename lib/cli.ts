// Command-line handling shared by every script: options via node:util's
// parseArgs, --help, and the SPEC's exit codes (0 ok, 1 runtime failure,
// 2 bad usage) with one readable line instead of a stack trace.
import { parseArgs, type ParseArgsOptionsConfig } from "node:util";

/** A mistake in how the script was called: reported in one line, exit 2. */
export class UsageError extends Error {}

/** An expected runtime failure (refused, timed out…): one line, exit 1. */
export class Failure extends Error {}

export interface CommandLine<Options extends ParseArgsOptionsConfig> {
  /** Usage text printed by --help: the first line is the synopsis. */
  usage: string;
  options: Options;
  /** Whether non-option arguments are accepted (default: no). */
  positionals?: boolean;
}

const HELP = { help: { type: "boolean", short: "h" } } as const;

/**
 * Parses `args` against `commandLine`. Prints the usage and exits 0 on
 * --help; throws UsageError for unknown options, missing values and
 * unexpected arguments.
 */
export function parseCommandLine<
  const Options extends ParseArgsOptionsConfig,
>(args: string[], commandLine: CommandLine<Options>) {
  const config = {
    args,
    options: { ...commandLine.options, ...HELP },
    allowPositionals: true,
    strict: true,
  } as const;
  let parsed;
  try {
    parsed = parseArgs(config);
  } catch (error) {
    // parseArgs messages are long and mention its own API; keep the first
    // sentence, which names the offending option.
    const message = error instanceof Error ? error.message : String(error);
    const ambiguous = /Option '(--[\w-]+)[^']*' argument is ambiguous/.exec(
      message,
    );
    if (ambiguous) {
      // `--timeout -1`: parseArgs will not take a value that looks like an
      // option unless it is attached with "=".
      throw new UsageError(
        `option '${
          ambiguous[1]
        }' needs a value; for one starting with '-', write ${
          ambiguous[1]
        }=VALUE`,
      );
    }
    throw new UsageError(
      message.split("\n")[0].split(". ")[0].replace(/\.$/, ""),
    );
  }
  if ((parsed.values as { help?: boolean }).help) {
    console.log(commandLine.usage.trimEnd());
    Deno.exit(0);
  }
  if (!commandLine.positionals && parsed.positionals.length > 0) {
    throw new UsageError(`unexpected argument '${parsed.positionals[0]}'`);
  }
  return parsed;
}

/** Parses a decimal integer in [min, max], or throws UsageError. */
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

/** Parses a TCP/UDP port number (0 asks the system for a free one). */
export function parsePort(value: string, name = "--port"): number {
  return parseInteger(value, name, 0, 65535);
}

/** Parses a positive number of seconds (fractions allowed), or throws. */
export function parseSeconds(value: string, name: string): number {
  const seconds = /^\d+(\.\d+)?$/.test(value.trim()) ? Number(value) : NaN;
  if (!(seconds > 0) || seconds > 86_400) {
    throw new UsageError(
      `${name} must be a number of seconds above 0 (up to 86400), got '${value}'`,
    );
  }
  return seconds;
}

/** Splits `host:port` (or `[v6]:port`) as used by multi_connect and tcp_proxy. */
export function parseHostAndPort(value: string, name: string) {
  const match = /^(?:\[([^\]]+)\]|([^:\s]+)):(\d+)$/.exec(value.trim());
  if (!match) {
    throw new UsageError(`${name} must look like host:port, got '${value}'`);
  }
  return {
    hostname: match[1] ?? match[2],
    port: parsePort(match[3], name),
  };
}

/** Turns an error from Deno's network or file APIs into one human line. */
export function describeError(error: unknown): string {
  if (error instanceof Deno.errors.ConnectionRefused) {
    return "connection refused";
  }
  if (error instanceof Deno.errors.TimedOut) return "timed out";
  if (error instanceof Deno.errors.AddrInUse) return "address already in use";
  if (error instanceof Deno.errors.AddrNotAvailable) {
    return "address not available on this machine";
  }
  if (error instanceof Deno.errors.ConnectionReset) return "connection reset";
  if (error instanceof Deno.errors.BrokenPipe) {
    return "connection closed by peer";
  }
  if (error instanceof Deno.errors.NetworkUnreachable) {
    return "network unreachable";
  }
  if (error instanceof Deno.errors.NotCapable) {
    return `missing permission: ${firstLine(error)}`;
  }
  if (error instanceof Deno.errors.PermissionDenied) {
    return `permission denied: ${firstLine(error)}`;
  }
  if (error instanceof Deno.errors.NotFound) return firstLine(error);
  if (error instanceof Error) {
    // DNS failures arrive as a generic error whose text names the lookup.
    if (/lookup|resolve|name or service|no address/i.test(error.message)) {
      return `name not resolved: ${firstLine(error)}`;
    }
    return firstLine(error);
  }
  return String(error);
}

function firstLine(error: Error): string {
  return error.message.split("\n")[0];
}

/**
 * Runs a script's main function as a command: usage errors exit 2 with a
 * hint, expected failures exit 1 with one line, and an exit code the main
 * function returns is used as is. Unexpected errors keep their stack trace:
 * those are bugs, and hiding them would help nobody.
 */
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
    if (error instanceof Failure) {
      console.error(`${scriptName}: ${error.message}`);
      Deno.exit(1);
    }
    if (error instanceof Deno.errors.NotCapable || isExpectedError(error)) {
      console.error(`${scriptName}: ${describeError(error)}`);
      Deno.exit(1);
    }
    throw error;
  }
}

/** Errors that come from the outside world rather than from a bug. */
export function isExpectedError(error: unknown): boolean {
  return [
    Deno.errors.ConnectionRefused,
    Deno.errors.ConnectionReset,
    Deno.errors.ConnectionAborted,
    Deno.errors.TimedOut,
    Deno.errors.AddrInUse,
    Deno.errors.AddrNotAvailable,
    Deno.errors.BrokenPipe,
    Deno.errors.NetworkUnreachable,
    Deno.errors.NotFound,
    Deno.errors.PermissionDenied,
    Deno.errors.NotConnected,
    Deno.errors.UnexpectedEof,
  ].some((kind) => error instanceof kind) ||
    (error instanceof Error &&
      /failed to lookup|name or service not known|dns error/i.test(
        error.message,
      ));
}
