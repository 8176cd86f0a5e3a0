// The tour (demo.ts) run as `deno task demo` runs it: the task's own
// permissions from deno.json, NO_COLOR=1, the project folder as cwd. It must
// finish within a bound, show every lesson's heading and the lines that
// prove each lesson happened, and leave no server listening and no scratch
// folder behind, also when it is interrupted.
import assert from "node:assert/strict";
import { join } from "node:path";
import { hasCommand, skipBecause, within } from "./helpers.ts";

const root = join(import.meta.dirname!, "..");
const KILL_AFTER_MS = 120_000; // a hung tour is killed, and fails
const TOUR_BOUND_S = 60; // ~5 s alone; generous on 2 shared CPUs

/** The permission flags of the `demo` task, e.g. ["--allow-net=127.0.0.1", …]. */
async function taskPermissions(): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(join(root, "deno.json")));
  const words = String(config.tasks.demo).split(/\s+/);
  assert.deepEqual(
    [words[0], words[1], words.at(-1)],
    ["deno", "run", "demo.ts"],
    `the demo task should be "deno run FLAGS demo.ts": ${config.tasks.demo}`,
  );
  const flags = words.slice(2, -1);
  assert.ok(flags.every((flag) => flag.startsWith("--allow-")));
  return flags;
}

/** Starts the tour; its stdout (as it grows), stderr and exit status. */
async function startTour() {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...(await taskPermissions()), "demo.ts"],
    cwd: root,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), KILL_AFTER_MS);
  const tour = {
    child,
    stdout: "",
    ended: false,
    changed: Promise.withResolvers<void>(), // more stdout, or its end
  };
  const stdout = (async () => {
    for await (
      const text of child.stdout.pipeThrough(new TextDecoderStream())
    ) {
      tour.stdout += text;
      tour.changed.resolve();
      tour.changed = Promise.withResolvers();
    }
    tour.ended = true;
    tour.changed.resolve();
  })();
  const stderr = new Response(child.stderr).text();
  const finished = (async () => {
    const status = await child.status;
    clearTimeout(timer);
    await stdout;
    return { status, stdout: tour.stdout, stderr: await stderr };
  })();
  return Object.assign(tour, { finished });
}

/** Folders named like the tour's scratch folder (demo-XXXXXX) in root. */
async function scratchFolders(): Promise<Set<string>> {
  const names = new Set<string>();
  for await (const entry of Deno.readDir(root)) {
    if (entry.isDirectory && /^demo-[0-9a-f]{6}$/.test(entry.name)) {
      names.add(entry.name);
    }
  }
  return names;
}

/** The TCP ports of the servers the output shows as listening. */
function tcpPorts(output: string): number[] {
  const ports = output.matchAll(
    /^Listening on (?:tcp|tls|http|https):\/\/127\.0\.0\.1:(\d+)$/gm,
  );
  return [...ports].map((match) => Number(match[1]));
}

/** Fails unless every port refuses a connection: nothing listens there now. */
async function assertNothingListens(ports: number[]) {
  for (const port of ports) {
    const connected = await Deno.connect({ hostname: "127.0.0.1", port })
      .then((conn) => {
        conn.close();
        return true;
      }, () => false);
    assert.equal(connected, false, `port ${port} still accepts connections`);
  }
}

/** The output as sections: heading (without "== ") → its text. */
function sections(output: string): Map<string, string> {
  const parts = output.split(/^== (.*) ==$/m);
  const map = new Map<string, string>();
  for (let i = 1; i < parts.length; i += 2) map.set(parts[i], parts[i + 1]);
  return map;
}

/** The section whose heading starts with `prefix`, its lines. */
function linesOf(all: Map<string, string>, prefix: string): string[] {
  const found = [...all].find(([heading]) => heading.startsWith(prefix));
  assert.ok(found, `no section "${prefix}…" in the tour`);
  return found[1].split("\n");
}

/** Asserts `line` is there, after a shown command matching `command`. */
function assertAfter(lines: string[], command: RegExp, line: string | RegExp) {
  const shown = lines.findIndex((l) => l.startsWith("$ ") && command.test(l));
  assert.ok(shown >= 0, `no command ${command} in:\n${lines.join("\n")}`);
  const found = lines.findIndex((l, i) =>
    i > shown && (typeof line === "string" ? l === line : line.test(l))
  );
  assert.ok(
    found > shown,
    `no ${line} after ${command} in:\n${lines.join("\n")}`,
  );
}

async function chatServerHelp(): Promise<string> {
  const { stdout } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net", "scripts/chat_server.ts", "--help"],
    cwd: root,
    stdout: "piped",
    stderr: "null",
  }).output();
  return new TextDecoder().decode(stdout);
}

Deno.test("demo: the whole tour runs, shows every lesson, leaves nothing behind", async () => {
  const before = await scratchFolders();
  const started = performance.now();
  const tour = await startTour();
  const { status, stdout, stderr } = await tour.finished;
  const elapsed = (performance.now() - started) / 1000;
  assert.equal(status.code, 0, `exit ${status.code}\n${stdout}\n${stderr}`);
  assert.equal(stderr, "", "the tour writes everything to stdout");
  assert.ok(elapsed < TOUR_BOUND_S, `the tour took ${elapsed.toFixed(1)} s`);
  assert.match(stdout, /\nTour finished in \d+\.\d s; /);
  assert.ok(!stdout.includes("\x1b["), "NO_COLOR=1, yet escape codes");
  assert.ok(!/^! /m.test(stdout), `a part failed:\n${stdout}`);

  // Nothing left: every TCP server it showed is gone, the scratch folder too.
  const ports = tcpPorts(stdout);
  assert.ok(ports.length >= 10, `only ${ports.length} TCP servers shown`);
  await assertNothingListens(ports);
  assert.deepEqual(await scratchFolders(), before);

  // Every server started on a free port, its command shown first.
  const lines = stdout.split("\n");
  lines.forEach((line, i) => {
    if (!line.startsWith("Listening on ")) return;
    const command = lines.slice(0, i).findLast((l) => l.startsWith("$ "));
    assert.match(command ?? "", / --port 0( |$)/, `before ${line}`);
  });

  const all = sections(stdout);
  const echo = linesOf(all, "Echo:");
  assertAfter(echo, /echo_client\.ts --port \d+ hello world$/, "hello world");
  assertAfter(
    echo,
    /echo_client\.ts --port \d+ --count 3$/,
    /^3 round trips, min\/avg\/max = [\d.]+\/[\d.]+\/[\d.]+ ms$/,
  );
  assertAfter(
    echo,
    /timeout_client\.ts .*--timeout 0\.5/,
    "timeout_client.ts: no reply: timed out after 0.5 s",
  );

  assertAfter(
    linesOf(all, "UDP timestamp:"),
    /udp_client\.ts --port \d+ hello over udp$/,
    /^\[\w{3} \w{3} [ \d]\d \d\d:\d\d:\d\d \d{4}\]hello over udp$/,
  );

  assertAfter(
    linesOf(all, "Upload:"),
    /upload_client\.ts/,
    // sha256 of "Uploaded.\n" 2000 times, as `sha256sum` computes it
    "200 OK 20000 " +
      "95d718a768a55b6ee73a3e1611d3f1f538f263192719b355c90a78209d77f1de",
  );

  const chat = linesOf(all, "Chat: two terminals");
  for (
    const line of ["A> hello, bob", "B| alice: hello, bob", "B| * alice left"]
  ) {
    assert.ok(
      chat.includes(line),
      `no ${JSON.stringify(line)}:\n${chat.join("\n")}`,
    );
  }
  assert.ok(
    !chat.includes("A| alice: hello, bob"),
    "a sender sees its own line",
  );
  assert.ok(
    chat.some((line) => /^B\| \* 2 here: (alice, bob|bob, alice)$/.test(line)),
  );

  const help = await chatServerHelp();
  if (help.includes("/msg")) {
    assert.ok(chat.includes("A| bob (private): just between us"));
  }
  const web = linesOf(all, "Chat in the browser:");
  if (help.includes("--web-port")) {
    assert.ok(web.includes("T| ada: hello from the browser"), web.join("\n"));
    assert.ok(web.some((line) => /^web\| guest\d+: hello, ada$/.test(line)));
  } else {
    assert.ok(web.includes("(skipped: this chat_server.ts has no --web-port)"));
  }
  const redis = linesOf(all, "Chat across processes:");
  if (!help.includes("--redis")) {
    assert.ok(redis.includes("(skipped: this chat_server.ts has no --redis)"));
  } else if (await hasCommand("redis-server")) {
    assert.ok(redis.includes("B| alice: hello from the first server"));
  } else {
    assert.ok(redis.includes("(skipped: redis-server is not installed)"));
  }

  const raw = linesOf(all, "HTTP over a bare socket");
  assertAfter(raw, /http_client\.ts -v /, "> GET / HTTP/1.1");
  assertAfter(raw, /http_client\.ts -v /, "< HTTP/1.1 200 OK");
  assertAfter(raw, /\/missing$/, /answered HTTP\/1\.1 404 Not Found$/);
  assertAfter(
    linesOf(all, "HTTP with Deno.serve"),
    /--data 'username=<alice>'/,
    "<h1>Welcome, &lt;alice&gt;!</h1>",
  );
  assertAfter(
    linesOf(all, "TCP proxy:"),
    /through the proxy$/,
    "through the proxy",
  );

  if (!(await hasCommand("openssl"))) {
    return skipBecause("openssl is not installed: no TLS or QUIC in the tour");
  }
  const tls = linesOf(all, "TLS:");
  assertAfter(tls, /--cacert \S+ hello over tls$/, "hello over tls");
  assertAfter(tls, /--tls hello$/, /certificate not trusted/);
  assertAfter(tls, /http_client\.ts -I --cacert/, "HTTP/1.1 200 OK");
  if (await hasCommand("curl")) {
    assertAfter(tls, /^\$ curl /, /^HTTP\/2 200\s*$/);
  } else {
    skipBecause("curl is not installed: no HTTP/2 line to check");
  }

  const quic = linesOf(all, "QUIC:");
  assertAfter(quic, /hello over quic$/, "hello over quic");
  assertAfter(
    quic,
    /--count 3$/,
    /^3 round trips, min\/avg\/max = [\d.]+\/[\d.]+\/[\d.]+ ms$/,
  );

  const dns = linesOf(all, "DNS:");
  assertAfter(dns, /dns_lookup\.ts www\.example\.test /, "192.0.2.10");
  assertAfter(dns, /--type MX /, "10 mail.example.test.");
  assertAfter(dns, /nowhere\.example\.test /, /no such name \(NXDOMAIN\)$/);
  if (await hasCommand("dig")) {
    assertAfter(
      dns,
      /^\$ dig /,
      "alias.example.test.\t300\tIN\tCNAME\twww.example.test.",
    );
  }

  const discovery = linesOf(all, "Discovery:");
  for (
    const line of ["A| + bob 127.0.0.1", "B| + alice 127.0.0.1", "A| - bob"]
  ) {
    assert.ok(discovery.includes(line), `no ${line}:\n${discovery.join("\n")}`);
  }

  const rpc = linesOf(all, "RPC:");
  assertAfter(rpc, /rpc_client\.ts --port \d+ add 2 3$/, "5");
  // The quick add overtakes the slow sleep sent before it.
  const answers = rpc.filter((line) => line.startsWith("< "));
  assert.deepEqual(answers, [
    '< {"jsonrpc":"2.0","result":5,"id":2}',
    '< {"jsonrpc":"2.0","result":1000,"id":1}',
  ]);
});

for (const [signal, code] of [["SIGINT", 130], ["SIGTERM", 143]] as const) {
  Deno.test(`demo: ${signal} mid-tour stops every server it started and removes its folder`, async () => {
    const before = await scratchFolders();
    const tour = await startTour();
    // Once a few servers have been up, in the middle of the tour.
    await within(
      60_000,
      (async () => {
        while (tcpPorts(tour.stdout).length < 3 && !tour.ended) {
          await tour.changed.promise;
        }
      })(),
      "three servers started",
    );
    tour.child.kill(signal);
    const { status, stdout } = await tour.finished;
    assert.equal(status.code, code, stdout);
    assert.match(stdout, /\nInterrupted: stopping what the tour started\.\n/);
    assert.ok(
      !/\nTour finished/.test(stdout),
      `the tour went on after ${signal}`,
    );
    await assertNothingListens(tcpPorts(stdout));
    assert.deepEqual(await scratchFolders(), before);
  });
}
