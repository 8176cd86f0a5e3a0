// lib/cli.ts: the value parsers at their boundaries, parseCommandLine's
// messages, and runCommand/requireUnstableNet as a user meets them: in a
// real subprocess, by exit code and the exact lines on stderr.
import assert from "node:assert/strict";
import {
  Failure,
  parseCommandLine,
  parseHostAndPort,
  parseInteger,
  parsePort,
  parseSeconds,
  requireUnstableNet,
  UsageError,
  withDefault,
} from "../lib/cli.ts";
import { closedPort, runTool } from "./helpers.ts";

// Deno 2.8+ runs tests without the op and resource sanitizers unless asked:
// a leaked socket, timer or pending read must fail these tests.
Deno.test.sanitizer({ ops: true, resources: true });

const CLI = new URL("../lib/cli.ts", import.meta.url).href;

/**
 * Runs `code` as a module in a fresh `deno run` with `flags`; `CLI` in the
 * code is replaced by lib/cli.ts's URL. (The module comes from stdin.)
 */
async function runSnippet(
  code: string,
  flags: string[] = [],
  args: string[] = [],
) {
  const result = await runTool(
    Deno.execPath(),
    ["run", ...flags, "-", ...args],
    code.replaceAll("CLI", CLI),
  );
  return { ...result, stdout: new TextDecoder().decode(result.stdout) };
}

/** The message of the UsageError `run` throws (fails if it throws none). */
function usageMessage(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    assert.ok(error instanceof UsageError, String(error));
    return error.message;
  }
  assert.fail("no UsageError");
}

// --- Ported from the old tests/lib_test.ts. ---

Deno.test("option parsing: numbers, ports, seconds, host:port", () => {
  assert.equal(parsePort("0"), 0);
  assert.equal(parsePort("65535"), 65535);
  for (const bad of ["65536", "-1", "1.5", "", "0x10", "12abc"]) {
    assert.throws(() => parsePort(bad), UsageError, bad);
  }
  assert.equal(parseInteger("7", "--count", 1, 10), 7);
  assert.throws(() => parseInteger("0", "--count", 1, 10), UsageError);
  assert.equal(parseSeconds("0.25", "--timeout"), 0.25);
  assert.throws(() => parseSeconds("0", "--timeout"), UsageError);
  assert.throws(() => parseSeconds("-1", "--timeout"), UsageError);
  assert.deepEqual(parseHostAndPort("[::1]:80", "t"), {
    hostname: "::1",
    port: 80,
  });
  assert.deepEqual(parseHostAndPort("example.com:443", "t"), {
    hostname: "example.com",
    port: 443,
  });
  assert.throws(() => parseHostAndPort("nohost", "t"), UsageError);
});

Deno.test("parseCommandLine: unknown options and stray arguments are usage errors", () => {
  const commandLine = {
    usage: "Usage: x",
    options: { port: { type: "string" as const } },
  };
  assert.equal(parseCommandLine(["--port", "1"], commandLine).values.port, "1");
  assert.throws(() => parseCommandLine(["--nope"], commandLine), UsageError);
  assert.throws(() => parseCommandLine(["stray"], commandLine), UsageError);
});

// --- The value parsers at their edges. ---

Deno.test("parseInteger: inclusive bounds, whitespace, leading zeros, the message", () => {
  assert.equal(parseInteger("1", "--n", 1, 10), 1);
  assert.equal(parseInteger("10", "--n", 1, 10), 10);
  assert.equal(parseInteger(" 5 ", "--n", 1, 10), 5);
  assert.equal(parseInteger("007", "--n"), 7);
  assert.equal(parseInteger("0", "--n"), 0); // default min 0
  assert.equal(
    parseInteger(String(Number.MAX_SAFE_INTEGER), "--n"),
    Number.MAX_SAFE_INTEGER,
  );
  assert.equal(
    usageMessage(() => parseInteger("11", "--n", 1, 10)),
    "--n must be a whole number from 1 to 10, got '11'",
  );
  for (
    const bad of [
      "",
      " ",
      "-0",
      "+5",
      "5.0",
      "1e3",
      "0b1",
      "Infinity",
      "NaN",
      "٣", // an Arabic-Indic digit is no ASCII digit
      "9007199254740993", // past MAX_SAFE_INTEGER
      "99999999999999999999999",
    ]
  ) {
    assert.throws(() => parseInteger(bad, "--n"), UsageError, `'${bad}'`);
  }
});

Deno.test("parsePort: 0 to 65535, the option named in the message", () => {
  assert.equal(parsePort("1"), 1);
  assert.equal(parsePort("8080"), 8080);
  assert.equal(
    usageMessage(() => parsePort("65536")),
    "--port must be a whole number from 0 to 65535, got '65536'",
  );
  assert.equal(
    usageMessage(() => parsePort("x", "--web-port")),
    "--web-port must be a whole number from 0 to 65535, got 'x'",
  );
});

Deno.test("parseSeconds: above 0 up to a day, fractions; allowZero lets 0 through", () => {
  assert.equal(parseSeconds("1", "--timeout"), 1);
  assert.equal(parseSeconds("0.001", "--timeout"), 0.001);
  assert.equal(parseSeconds("86400", "--timeout"), 86400);
  assert.equal(parseSeconds(" 2.5 ", "--timeout"), 2.5);
  assert.equal(
    usageMessage(() => parseSeconds("0", "--timeout")),
    "--timeout must be a number of seconds above 0 (up to 86400), got '0'",
  );
  assert.equal(parseSeconds("0", "--idle-timeout", true), 0);
  assert.equal(parseSeconds("0.0", "--idle-timeout", true), 0);
  assert.equal(
    usageMessage(() => parseSeconds("-1", "--idle-timeout", true)),
    "--idle-timeout must be a number of seconds 0 or more (up to 86400), got '-1'",
  );
  for (
    const bad of [
      "86400.5",
      "86401",
      ".5",
      "1.",
      "1e3",
      "1,5",
      "",
      "Infinity",
      "NaN",
      "0x10",
      "-0",
    ]
  ) {
    assert.throws(() => parseSeconds(bad, "--t"), UsageError, `'${bad}'`);
    assert.throws(() => parseSeconds(bad, "--t", true), UsageError, `'${bad}'`);
  }
});

Deno.test("parseHostAndPort: names, IPv4, bracketed IPv6, and what is refused", () => {
  assert.deepEqual(parseHostAndPort("127.0.0.1:0", "--target"), {
    hostname: "127.0.0.1",
    port: 0,
  });
  assert.deepEqual(parseHostAndPort("[fe80::1%lo]:65535", "--target"), {
    hostname: "fe80::1%lo",
    port: 65535,
  });
  assert.deepEqual(parseHostAndPort(" localhost:9 ", "--target"), {
    hostname: "localhost",
    port: 9,
  });
  assert.deepEqual(
    parseHostAndPort("[2001:db8::1]:443", "--target"),
    { hostname: "2001:db8::1", port: 443 },
  );
  assert.equal(
    usageMessage(() => parseHostAndPort("::1:80", "--target")),
    "--target must look like host:port, got '::1:80'",
  );
  assert.equal(
    usageMessage(() => parseHostAndPort("host:70000", "--target")),
    "--target must be a whole number from 0 to 65535, got '70000'",
  );
  for (
    const bad of [
      "host",
      "host:",
      ":80",
      "[::1]",
      "[::1]:",
      "::1",
      "a b:80",
      "host:80x",
      "[]:80",
      "[::1:80",
      "host]:80",
      "a[b]:80",
    ]
  ) {
    assert.throws(
      () => parseHostAndPort(bad, "--target"),
      UsageError,
      `'${bad}' was accepted`,
    );
  }
});

// --- parseCommandLine's messages. ---

const COMMAND_LINE = {
  usage: "Usage: tool.ts [options]\n\nOptions:\n  --timeout S\n",
  options: {
    timeout: { type: "string" as const, default: "1" },
    verbose: { type: "boolean" as const },
  },
};

Deno.test("parseCommandLine: defaults, =VALUE, booleans, positionals when allowed", () => {
  const parsed = parseCommandLine([], COMMAND_LINE);
  assert.equal(parsed.values.timeout, "1");
  assert.equal(parsed.values.verbose, undefined);
  const given = parseCommandLine(["--timeout=-1", "--verbose"], COMMAND_LINE);
  assert.equal(given.values.timeout, "-1");
  assert.equal(given.values.verbose, true);
  const withPositionals = parseCommandLine(["a", "--verbose", "b"], {
    ...COMMAND_LINE,
    positionals: true,
  });
  assert.deepEqual(withPositionals.positionals, ["a", "b"]);
  // After "--", an argument that looks like an option is a positional.
  const dashed = parseCommandLine(["--", "--timeout"], {
    ...COMMAND_LINE,
    positionals: true,
  });
  assert.deepEqual(dashed.positionals, ["--timeout"]);
});

Deno.test("parseCommandLine: one short line for each kind of mistake", () => {
  assert.equal(
    usageMessage(() => parseCommandLine(["--nope"], COMMAND_LINE)),
    "Unknown option '--nope'",
  );
  assert.equal(
    usageMessage(() => parseCommandLine(["stray"], COMMAND_LINE)),
    "unexpected argument 'stray'",
  );
  assert.equal(
    usageMessage(() => parseCommandLine(["--timeout"], COMMAND_LINE)),
    "Option '--timeout <value>' argument missing",
  );
  assert.equal(
    usageMessage(() => parseCommandLine(["--timeout", "-1"], COMMAND_LINE)),
    "option '--timeout' needs a value; for one starting with '-', write --timeout=VALUE",
  );
  assert.equal(
    usageMessage(() => parseCommandLine(["--verbose=yes"], COMMAND_LINE)),
    "Option '--verbose' does not take an argument",
  );
  for (
    const args of [["--nope"], ["stray"], ["--timeout"], ["--timeout", "-1"]]
  ) {
    const message = usageMessage(() => parseCommandLine(args, COMMAND_LINE));
    assert.ok(!message.includes("\n"), message);
  }
});

Deno.test("parseCommandLine --help and -h print the usage to stdout and exit 0", async () => {
  const code = `
    import { parseCommandLine } from "CLI";
    parseCommandLine(Deno.args, {
      usage: "Usage: tool.ts [--x N]\\n\\n  --x N   a number\\n\\n\\n",
      options: { x: { type: "string" } },
    });
    console.log("not reached");
  `;
  for (const flag of ["--help", "-h"]) {
    const result = await runSnippet(code, [], [flag, "--x", "1"]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(
      result.stdout,
      "Usage: tool.ts [--x N]\n\n  --x N   a number\n",
    );
    assert.equal(result.stderr, "");
  }
});

// --- runCommand and requireUnstableNet, in subprocesses. ---

const COMMAND = `
  import { Failure, parsePort, runCommand, UsageError } from "CLI";
  await runCommand("tool.ts", async () => {
    const [what] = Deno.args;
    if (what === "ok") { console.log("done"); return; }
    if (what === "code") return 3;
    if (what === "zero") return 0;
    if (what === "usage") parsePort("70000");
    if (what === "failure") throw new Failure("cannot do it: no reason", "other");
    if (what === "refused") {
      await Deno.connect({ hostname: "127.0.0.1", port: Number(Deno.args[1]) });
    }
    if (what === "permission") await Deno.readTextFile("/etc/hostname");
    if (what === "bug") throw new TypeError("a bug, with its stack");
  });
`;

Deno.test("runCommand: exit 0, a returned code, 2 for usage, 1 for failures, a stack for bugs", async () => {
  const run = (...args: string[]) =>
    runSnippet(COMMAND, ["--allow-net=127.0.0.1"], args);

  const ok = await run("ok");
  assert.deepEqual([ok.code, ok.stdout, ok.stderr], [0, "done\n", ""]);
  const code = await run("code");
  assert.deepEqual([code.code, code.stderr], [3, ""]);
  const zero = await run("zero");
  assert.deepEqual([zero.code, zero.stderr], [0, ""]);

  const usage = await run("usage");
  assert.equal(usage.code, 2);
  assert.equal(
    usage.stderr,
    "tool.ts: --port must be a whole number from 0 to 65535, got '70000'\n" +
      "Try 'tool.ts --help' for more information.\n",
  );

  const failure = await run("failure");
  assert.equal(failure.code, 1);
  assert.equal(failure.stderr, "tool.ts: cannot do it: no reason\n");

  const refused = await run("refused", String(closedPort()));
  assert.equal(refused.code, 1);
  assert.equal(refused.stderr, "tool.ts: connection refused\n");

  const permission = await run("permission");
  assert.equal(permission.code, 1);
  assert.match(
    permission.stderr,
    /^tool\.ts: missing permission: Requires read access to "\/etc\/hostname".*\n$/,
  );
  assert.equal(permission.stderr.split("\n").length, 2); // one line

  const bug = await run("bug");
  assert.notEqual(bug.code, 0);
  assert.notEqual(bug.code, 2);
  assert.match(bug.stderr, /TypeError: a bug, with its stack/);
  assert.match(bug.stderr, /\n\s+at /); // the stack trace is kept
  assert.equal(bug.stdout, "");
});

Deno.test("requireUnstableNet: one line and exit 1 without --unstable-net, silent with it", async () => {
  const code = `
    import { requireUnstableNet, runCommand } from "CLI";
    await runCommand("udp_tool.ts", () => {
      requireUnstableNet();
      console.log("has listenDatagram:", typeof Deno.listenDatagram);
    });
  `;
  // --no-config: without deno.json's "unstable": ["net"].
  const without = await runSnippet(code, ["--no-config"]);
  assert.equal(without.code, 1);
  assert.equal(
    without.stderr,
    "udp_tool.ts: this needs Deno's --unstable-net flag: deno run --unstable-net --allow-net …\n",
  );
  assert.equal(without.stdout, "");
  const withFlag = await runSnippet(code, ["--no-config", "--unstable-net"]);
  assert.equal(withFlag.code, 0, withFlag.stderr);
  assert.equal(withFlag.stdout, "has listenDatagram: function\n");
  // These tests run with the flag (deno.json), so in-process it is silent.
  requireUnstableNet();
  // And what it throws is a Failure, for runCommand's exit 1.
  assert.ok(new Failure("x") instanceof Error);
});

Deno.test("withDefault: a string option whose default is the value as text", () => {
  assert.deepEqual(withDefault(8080), { type: "string", default: "8080" });
  const { values } = parseCommandLine([], {
    usage: "",
    options: { port: withDefault(9999) },
  });
  assert.equal(values.port, "9999");
});
