// Tests for scripts/udp_discovery.ts. Everything stays on loopback: every
// copy runs with --interface 127.0.0.1 (so multicast leaves through lo),
// broadcast goes to 127.255.255.255, and each test uses its own free port.
// Covered: copies finding each other in one process and as subprocesses,
// goodbyes and silent expiry, the --broadcast variant, the exact datagram,
// hostile datagrams (malformed, oversized, floods of fake peers, escape
// sequences in names), nc as a peer, the CLI and signals.
import assert from "node:assert/strict";
import {
  DEFAULT_GROUP,
  startDiscovery,
  subnetBroadcast,
} from "../scripts/udp_discovery.ts";
import { printable } from "../lib/terminal.ts";
import {
  hasCommand,
  runScript,
  runTool,
  scriptPath,
  skipBecause,
  within,
} from "./helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const GROUP = { transport: "udp", hostname: DEFAULT_GROUP } as const;

/** A UDP port nobody uses right now. */
function freeUdpPort(): number {
  const socket = Deno.listenDatagram({
    transport: "udp",
    hostname: "0.0.0.0",
    port: 0,
  });
  const { port } = socket.addr as Deno.NetAddr;
  socket.close();
  return port;
}

/** Collects printed lines and waits, bounded, for the ones a test expects. */
class Lines {
  lines: string[] = [];
  #wake: (() => void) | undefined;

  add = (line: string) => {
    this.lines.push(line);
    this.#wake?.();
  };

  /** Waits until `line` has been printed `count` times. */
  async waitFor(line: string, ms = 5000, count = 1) {
    await within(
      ms,
      (async () => {
        while (this.lines.filter((seen) => seen === line).length < count) {
          await new Promise<void>((resolve) => this.#wake = resolve);
        }
      })(),
      `the line ${JSON.stringify(line)}`,
    );
  }
}

/**
 * Sends datagrams to the group from a socket bound to loopback, paced: UDP
 * drops what does not fit in the receiver's buffer, and a burst of hundreds
 * would overflow it.
 */
async function sendToGroup(
  port: number,
  ...datagrams: (string | Uint8Array)[]
) {
  const socket = Deno.listenDatagram({
    transport: "udp",
    hostname: "127.0.0.1",
    port: 0,
  });
  try {
    for (const [i, datagram] of datagrams.entries()) {
      const bytes = typeof datagram === "string"
        ? encoder.encode(datagram)
        : datagram;
      await socket.send(bytes, { ...GROUP, port });
      if (i % 20 === 19) {
        await new Promise((resolve) => setTimeout(resolve, 10));
      }
    }
  } finally {
    socket.close();
  }
}

/** A copy of the script as a subprocess, its stdout lines collected. */
function spawn(name: string, port: number, ...extra: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--unstable-net",
      "--allow-net",
      scriptPath("udp_discovery.ts"),
      "--interface",
      "127.0.0.1",
      "--port",
      String(port),
      "--interval",
      "0.2",
      ...extra,
      name,
    ],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const kill = setTimeout(() => child.kill("SIGKILL"), 30_000);
  const lines = new Lines();
  const stderr = new Response(child.stderr).text();
  const reading = (async () => {
    let buffered = "";
    for await (
      const text of child.stdout.pipeThrough(new TextDecoderStream())
    ) {
      buffered += text;
      const parts = buffered.split("\n");
      buffered = parts.pop()!;
      parts.forEach(lines.add);
    }
  })();
  const stop = async (signal: Deno.Signal = "SIGTERM") => {
    try {
      child.kill(signal);
    } catch {
      // Already gone.
    }
    const status = await child.status;
    clearTimeout(kill);
    await reading;
    return { status, stderr: await stderr };
  };
  return {
    lines,
    stop,
    [Symbol.asyncDispose]: async () => void await stop("SIGKILL"),
  };
}

Deno.test("two copies in one process find each other, skip themselves, and BYE removes at once", async () => {
  const port = freeUdpPort();
  const alice = new Lines();
  const bob = new Lines();
  await using a = await startDiscovery({
    name: "alice",
    port,
    interval: 1,
    print: alice.add,
  });
  const b = await startDiscovery({
    name: "bob",
    port,
    interval: 1,
    print: bob.add,
  });
  await alice.waitFor("+ bob 127.0.0.1");
  await bob.waitFor("+ alice 127.0.0.1", 3000);
  const started = performance.now();
  await b.close();
  await alice.waitFor("- bob");
  // Three silent intervals would be 3 s: the goodbye made it immediate.
  assert.ok(performance.now() - started < 1500);
  assert.deepEqual(alice.lines, ["+ bob 127.0.0.1", "- bob"]);
  assert.deepEqual(bob.lines, ["+ alice 127.0.0.1"]);
  assert.notEqual(a.id, b.id);
});

Deno.test("the datagram: DISCOVERY/1 HELLO id interval name from the interface address, then BYE", async () => {
  const port = freeUdpPort();
  const listener = Deno.listenDatagram({
    transport: "udp",
    hostname: "0.0.0.0",
    port,
    reuseAddress: true,
  });
  try {
    await listener.joinMulticastV4(DEFAULT_GROUP, "127.0.0.1");
    const discovery = await startDiscovery({
      name: "zoë",
      port,
      interval: 0.25,
      print: () => {},
    });
    const receive = async () => {
      const [data, from] = await within(3000, listener.receive(), "a datagram");
      return { text: decoder.decode(data), from: from as Deno.NetAddr };
    };
    const hello = await receive();
    assert.equal(hello.text, `DISCOVERY/1 HELLO ${discovery.id} 250 zoë`);
    assert.match(discovery.id, /^[0-9a-f]{16}$/);
    assert.equal(hello.from.hostname, "127.0.0.1");
    assert.equal((await receive()).text, hello.text); // every interval
    await discovery.close();
    let last;
    do last = await receive(); while (last.text.includes(" HELLO "));
    assert.equal(last.text, `DISCOVERY/1 BYE ${discovery.id} 250 zoë`);
  } finally {
    listener.close();
  }
});

Deno.test("hostile datagrams are ignored; names with escape sequences are shown escaped", async () => {
  const port = freeUdpPort();
  const seen = new Lines();
  await using _ = await startDiscovery({
    name: "watcher",
    port,
    interval: 0.2,
    print: seen.add,
  });
  const id = "0123456789abcdef";
  const junk: (string | Uint8Array)[] = [
    "",
    "hello",
    `DISCOVERY/1 HELLO ${id} 1000`, // no name
    `DISCOVERY/1 HELLO ${id} 1000 `, // empty name
    `DISCOVERY/2 HELLO ${id} 1000 future`,
    `discovery/1 HELLO ${id} 1000 lower`,
    `DISCOVERY/1 HI ${id} 1000 verb`,
    `DISCOVERY/1 HELLO 0123456789ABCDEF 1000 upper-id`,
    `DISCOVERY/1 HELLO 0123456789abcde 1000 short-id`,
    `DISCOVERY/1 HELLO ${id} 10 too-fast`,
    `DISCOVERY/1 HELLO ${id} 99999 too-slow`,
    `DISCOVERY/1 HELLO ${id} 0100 leading-zero`,
    `DISCOVERY/1 HELLO ${id} 1000 ${"n".repeat(300)}`, // over 256 bytes
    new Uint8Array([
      ...encoder.encode(`DISCOVERY/1 HELLO ${id} 1000 `),
      0xff,
      0xfe,
    ]),
    new Uint8Array(65_000).fill(0x41),
  ];
  for (let i = 0; i < 200; i++) {
    junk.push(crypto.getRandomValues(new Uint8Array(i + 1)));
  }
  await sendToGroup(port, ...junk);
  // Then one real peer whose name tries to clear the screen, colour the
  // text, reverse it (bidi override) and hide a character.
  await new Promise((resolve) => setTimeout(resolve, 200));
  await sendToGroup(
    port,
    `DISCOVERY/1 HELLO ${id} 1000 \x1b[2J\x1b[31mred\u202eevil\u200b\\x\x9b`,
  );
  // (lib's printable() leaves the literal "\\x" as it is.)
  await seen.waitFor(
    "+ \\x1b[2J\\x1b[31mred\\u{202e}evil\\u{200b}\\x\\x9b 127.0.0.1",
  );
  await sendToGroup(port, `DISCOVERY/1 BYE ${id} 1000 whatever`);
  await seen.waitFor("- \\x1b[2J\\x1b[31mred\\u{202e}evil\\u{200b}\\x\\x9b");
  assert.equal(seen.lines.length, 2, seen.lines.join("\n"));
});

Deno.test("a flood of fake peers fills the table to 256 and no further; BYE makes room", async () => {
  const port = freeUdpPort();
  const seen = new Lines();
  await using _ = await startDiscovery({
    name: "watcher",
    port,
    interval: 0.2,
    print: seen.add,
  });
  const fake = (kind: string, i: number) =>
    `DISCOVERY/1 ${kind} ${i.toString(16).padStart(16, "0")} 60000 fake${i}`;
  const hellos = Array.from({ length: 300 }, (_, i) => fake("HELLO", i));
  // Twice: a datagram lost to a full buffer is no reason to fail.
  await sendToGroup(port, ...hellos, ...hellos);
  const added = () => seen.lines.filter((line) => line.startsWith("+ "));
  await within(
    5000,
    (async () => {
      while (added().length < 256) {
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
    })(),
    "256 peers",
  );
  await sendToGroup(port, `DISCOVERY/1 HELLO ffffffffffffffff 1000 late`);
  await new Promise((resolve) => setTimeout(resolve, 300));
  assert.equal(added().length, 256);
  assert.ok(!seen.lines.includes("+ late 127.0.0.1"));
  // Ten say goodbye: ten "-" lines, and room for the newcomer.
  const known = added().slice(0, 10).map((line) =>
    Number(/fake(\d+)/.exec(line)![1])
  );
  await sendToGroup(port, ...known.map((i) => fake("BYE", i)));
  await sendToGroup(port, `DISCOVERY/1 HELLO ffffffffffffffff 1000 late`);
  await seen.waitFor("+ late 127.0.0.1");
  assert.equal(seen.lines.filter((line) => line.startsWith("- ")).length, 10);
});

Deno.test("a peer that changes its name is shown leaving and coming back", async () => {
  const port = freeUdpPort();
  const seen = new Lines();
  await using _ = await startDiscovery({
    name: "watcher",
    port,
    interval: 0.2,
    print: seen.add,
  });
  const id = "00000000000000aa";
  await sendToGroup(port, `DISCOVERY/1 HELLO ${id} 1000 old`);
  await seen.waitFor("+ old 127.0.0.1");
  await sendToGroup(
    port,
    `DISCOVERY/1 HELLO ${id} 1000 old`,
    `DISCOVERY/1 HELLO ${id} 1000 new`,
  );
  await seen.waitFor("+ new 127.0.0.1");
  assert.deepEqual(seen.lines, ["+ old 127.0.0.1", "- old", "+ new 127.0.0.1"]);
});

Deno.test("subprocesses: two copies see each other; SIGTERM says goodbye and exits 0", async () => {
  const port = freeUdpPort();
  await using alice = spawn("alice", port);
  await using bob = spawn("bob", port);
  await alice.lines.waitFor("+ bob 127.0.0.1", 10_000);
  await bob.lines.waitFor("+ alice 127.0.0.1", 10_000);
  const started = performance.now();
  const { status, stderr } = await bob.stop("SIGTERM");
  assert.equal(status.code, 0);
  assert.ok(performance.now() - started < 2000);
  assert.equal(
    stderr,
    `announcing bob to 239.255.42.99:${port}\n`,
  );
  await alice.lines.waitFor("- bob", 2000);
  assert.deepEqual(bob.lines.lines, ["+ alice 127.0.0.1"]);
  const aliceEnd = await alice.stop("SIGINT");
  assert.equal(aliceEnd.status.code, 0);
  assert.deepEqual(alice.lines.lines, ["+ bob 127.0.0.1", "- bob"]);
});

Deno.test("subprocesses: a copy killed without a goodbye is dropped after three intervals", async () => {
  const port = freeUdpPort();
  await using alice = spawn("alice", port);
  await using carol = spawn("carol", port);
  await alice.lines.waitFor("+ carol 127.0.0.1", 10_000);
  const killed = performance.now();
  await carol.stop("SIGKILL");
  await alice.lines.waitFor("- carol", 5000);
  const silentMs = performance.now() - killed;
  // Three intervals of 0.2 s since carol's last announcement, so between
  // 0.4 s and about 0.9 s after the kill; a loaded machine may add more.
  assert.ok(silentMs >= 350, `dropped after ${silentMs} ms`);
  console.log(`  dropped ${silentMs.toFixed(0)} ms after SIGKILL`);
});

Deno.test("subprocesses: --broadcast on loopback (127.255.255.255) works the same", async () => {
  const port = freeUdpPort();
  await using alice = spawn("alice", port, "--broadcast");
  await using bob = spawn("bob", port, "--broadcast");
  await alice.lines.waitFor("+ bob 127.0.0.1", 10_000);
  await bob.lines.waitFor("+ alice 127.0.0.1", 10_000);
  const { status, stderr } = await bob.stop();
  assert.equal(status.code, 0);
  assert.equal(
    stderr,
    `announcing bob to 127.255.255.255:${port}\n`,
  );
  await alice.lines.waitFor("- bob", 2000);
});

const haveNc = await hasCommand("nc");
Deno.test({
  name: "nc can announce a peer (the header's Try it line)",
  ignore: !haveNc,
  async fn() {
    const port = freeUdpPort();
    const seen = new Lines();
    await using _ = await startDiscovery({
      name: "watcher",
      port,
      interval: 0.2,
      print: seen.add,
    });
    const nc = await runTool(
      "nc",
      ["-u", "-w1", "-s", "127.0.0.1", DEFAULT_GROUP, String(port)],
      "DISCOVERY/1 HELLO 0123456789abcdef 1000 nc",
    );
    assert.equal(nc.code, 0, nc.stderr);
    await seen.waitFor("+ nc 127.0.0.1");
  },
});
if (!haveNc) skipBecause("nc not installed");

Deno.test("names are shown through lib's printable(): controls, bidi and format characters escaped", () => {
  assert.equal(printable("plain name é 中 🙂"), "plain name é 中 🙂");
  assert.equal(printable("a\tb\nc\x7f\x85"), "a\\x09b\\x0ac\\x7f\\x85");
  assert.equal(
    printable("\u202e\u2066\u200d\ufeff\u{e0041}"),
    "\\u{202e}\\u{2066}\\u{200d}\\u{feff}\\u{e0041}",
  );
  // Unlike the script's own terminalSafe() before it, printable() leaves a
  // backslash and U+2028 (a line separator, not a control) as they are.
  assert.equal(printable("\\x1b\u2028"), "\\x1b\u2028");
});

Deno.test("subnetBroadcast: loopback is 127.255.255.255; others from the netmask", () => {
  assert.equal(subnetBroadcast("127.0.0.1"), "127.255.255.255");
  assert.equal(subnetBroadcast("127.1.2.3"), "127.255.255.255");
  for (const entry of Deno.networkInterfaces()) {
    if (entry.family !== "IPv4" || entry.address.startsWith("127.")) continue;
    // Computed only; nothing is sent to it.
    const bits = Number(entry.cidr.split("/")[1]);
    const broadcast = subnetBroadcast(entry.address);
    if (bits === 24) {
      assert.equal(broadcast, entry.address.replace(/\.\d+$/, ".255"));
    }
    assert.notEqual(broadcast, "255.255.255.255");
  }
  assert.throws(
    () => subnetBroadcast("192.0.2.123"),
    /is not an address of this machine/,
  );
});

Deno.test("CLI: bad arguments exit 2 with one line; an address not ours exits 1", async () => {
  const cases: [string[], string][] = [
    [[], "give one NAME"],
    [["a", "b"], "give one NAME"],
    [["--group", "10.0.0.1", "x"], "--group must be an IPv4 multicast address"],
    [["--group", "ff02::1", "x"], "--group must be an IPv4 multicast address"],
    [
      ["--interface", "::1", "x"],
      "--interface must be an IPv4 address of this host",
    ],
    [
      ["--interface", "0.0.0.0", "x"],
      "--interface must be an IPv4 address of this host",
    ],
    [
      ["--interface", "255.255.255.255", "x"],
      "--interface must be an IPv4 address of this host",
    ],
    [["--interval", "0.01", "x"], "--interval must be from 0.05 to 60 seconds"],
    [
      ["--interval", "-1", "x"],
      "option '--interval' needs a value; for one starting with '-', write --interval=VALUE",
    ],
    [
      ["--port", "99999", "x"],
      "--port must be a whole number from 0 to 65535, got '99999'",
    ],
    [["n".repeat(65)], "NAME must be 1 to 64 bytes of UTF-8"],
  ];
  await Promise.all(cases.map(async ([args, message]) => {
    const run = await runScript("udp_discovery.ts", args, {
      allow: ["--unstable-net", "--allow-net"],
    });
    assert.equal(run.code, 2, args.join(" "));
    assert.equal(run.stdout, "");
    assert.equal(
      run.stderr,
      `udp_discovery.ts: ${message}\nTry 'udp_discovery.ts --help' for more information.\n`,
    );
  }));
  const notOurs = await runScript(
    "udp_discovery.ts",
    ["--interface", "192.0.2.123", "--port", String(freeUdpPort()), "x"],
    { allow: ["--unstable-net", "--allow-net"] },
  );
  assert.equal(notOurs.code, 1);
  assert.equal(
    notOurs.stderr,
    "udp_discovery.ts: address not available on this machine\n",
  );
  // Without Deno's flag (and deno.json, which sets it): one line, exit 1.
  const flagless = await runScript("udp_discovery.ts", ["x"], {
    allow: ["--no-config", "--allow-net"],
  });
  assert.deepEqual([flagless.code, flagless.stderr], [
    1,
    "udp_discovery.ts: this needs Deno's --unstable-net flag: deno run --unstable-net --allow-net …\n",
  ]);
  const help = await runScript("udp_discovery.ts", ["--help"], {
    allow: ["--unstable-net"],
  });
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: udp_discovery\.ts /);
});
