// Tests for scripts/basics/: every tutorial-sized script run as a real
// subprocess and driven by a peer nobody here wrote (nc, curl, Python's
// socket module, http.client and http.server), the upload and UDP pairs also
// against the full scripts, exact bytes throughout; and the rules every basic
// script keeps (40 lines, nothing from lib/, a runnable header with a cite).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  closedPort,
  hasCommand,
  randomBytes,
  readAll,
  runScript,
  runTool,
  skipBecause,
  startPeer,
  startScript,
  startScriptWithInput,
  startUnansweredPort,
} from "./helpers.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const HOST = "127.0.0.1";
const UDP = ["--unstable-net", "--allow-net"];

const havePython = await hasCommand("python3");
const haveNc = await hasCommand("nc");
const haveCurl = await hasCommand("curl");
if (!havePython) skipBecause("python3 not installed: basics Python tests");
if (!haveNc) skipBecause("nc not installed: basics nc tests");
if (!haveCurl) skipBecause("curl not installed: basics curl tests");

function hex(data: string | Uint8Array): string {
  const bytes = typeof data === "string" ? encoder.encode(data) : data;
  return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/** Runs a Python program (its own time limits inside) to completion. */
function python(code: string, args: (string | number)[], stdin?: Uint8Array) {
  return runTool("python3", ["-c", code, ...args.map(String)], stdin);
}

/** Starts a Python peer that prints its port as its first line. */
async function startPython(code: string, args: (string | number)[] = []) {
  const peer = await startPeer(
    "python3",
    ["-u", "-c", code, ...args.map(String)],
    /^(\d+)\n/,
  );
  return Object.assign(peer, { port: Number(peer.match[1]) });
}

/** A file in a fresh temporary folder; remove the folder when done. */
async function tempFile(name: string, bytes: Uint8Array) {
  const dir = await Deno.makeTempDir();
  await Deno.writeFile(`${dir}/${name}`, bytes);
  return { dir, path: `${dir}/${name}` };
}

async function exists(path: string): Promise<boolean> {
  return await Deno.lstat(path).then(() => true, () => false);
}

// ---------------------------------------------------------------------------
// The rules every basic script keeps
// ---------------------------------------------------------------------------

const BASICS = [
  "echo_server.ts",
  "flask_hello.ts",
  "hello_server.ts",
  "http_get.ts",
  "http_hello_server.ts",
  "multi_connect.ts",
  "tcp_client.ts",
  "tcp_server.ts",
  "timeout_client.ts",
  "udp_client.ts",
  "udp_server.ts",
  "udp_typed_server.ts",
  "upload_client.ts",
  "upload_server.ts",
];

Deno.test("basics: each is ≤ 40 lines, imports nothing from lib/, and its header runs, cites and points on", async () => {
  const folder = new URL("../scripts/basics/", import.meta.url);
  const found: string[] = [];
  for await (const entry of Deno.readDir(folder)) {
    if (entry.name.endsWith(".ts")) found.push(entry.name);
  }
  assert.deepEqual(found.sort(), BASICS);
  for (const name of BASICS) {
    const text = await Deno.readTextFile(new URL(name, folder));
    const lines = text.replace(/\n$/, "").split("\n");
    const header = lines.slice(0, lines.findIndex((l) => !l.startsWith("//")))
      .join("\n");
    assert.ok(lines.length <= 40, `${name}: ${lines.length} lines`);
    assert.doesNotMatch(text, /from\s+["'][^"']*lib\//, `${name} imports lib/`);
    // Plain Deno: the only imports allowed are Node's built-in modules.
    assert.doesNotMatch(
      text,
      /^import [^"']*["'](?!node:)/m,
      `${name}: import`,
    );
    const run = /^\/\/ Run: +deno run (.*)$/m.exec(header);
    assert.ok(run, `${name}: no "Run: deno run" line in the header`);
    assert.match(run[1], new RegExp(`scripts/basics/${name}`), name);
    if (name.startsWith("udp_")) assert.match(run[1], /--unstable-net/, name);
    assert.match(header, /^\/\/ Try it: /m, `${name}: no "Try it:" line`);
    assert.match(header, /\b00[0-4] §\S/, `${name}: no tutorial citation`);
    assert.match(header, /^\/\/ Leaves out: \S/m, `${name}: no "Leaves out:"`);
    assert.equal(header.match(/^\/\/ Leaves out:/gm)?.length, 1, name);
    assert.doesNotMatch(header, /^\/\/ Leaves out:.*\n\/\/ {2}/m, "one line");
    const full = /the full job[^:]*: (scripts\/\w+\.ts)/.exec(header);
    assert.ok(full, `${name}: does not name the full script`);
    assert.ok(
      await exists(new URL(`../${full[1]}`, import.meta.url).pathname),
      `${name}: ${full[1]} does not exist`,
    );
  }
});

Deno.test("basics: the tutorial cited in each header holds what the script retells", async () => {
  // They live outside the repository: the first shared/tutorials/ found in
  // a folder above it.
  let tutorials: URL | undefined;
  let folder = new URL("../../", import.meta.url); // just above the repository
  while (!tutorials && folder.pathname !== "/") {
    const candidate = new URL("shared/tutorials/", folder);
    if (await exists(candidate.pathname)) tutorials = candidate;
    folder = new URL("../", folder);
  }
  if (!tutorials) {
    skipBecause("no shared/tutorials/ above the repository: cites unchecked");
    return;
  }
  const files = new Map<string, string>();
  for await (const entry of Deno.readDir(tutorials)) {
    const number = /^(\d{3})_/.exec(entry.name)?.[1];
    if (number) {
      files.set(
        number,
        await Deno.readTextFile(new URL(entry.name, tutorials)),
      );
    }
  }
  // For each script: the heading its cite names, and a call the retold
  // code makes there.
  const expected: Record<string, [string, RegExp, RegExp]> = {
    "tcp_server.ts": ["000 §4.1", /## 4\.1 /, /input\(/],
    "tcp_client.ts": ["000 §4.2", /## 4\.2 /, /client\.connect\(address\)/],
    "multi_connect.ts": ["000 §4.3", /## 4\.3 /, /for host, port in servers/],
    "upload_client.ts": ["000 §4.4", /## 4\.4 /, /os\.path\.basename/],
    "upload_server.ts": ["000 §4.4", /## 4\.4 /, /status_code/],
    "timeout_client.ts": ["000 §4.5", /## 4\.5 /, /settimeout\(1\)/],
    "echo_server.ts": ["001 §3", /# 3\./, /conn\.sendall\(data\)/],
    "flask_hello.ts": ["001 §4", /# 4\./, /@app\.route/],
    "http_get.ts": ["003 §TCP编程", /TCP编程/, /Connection: close/],
    "http_hello_server.ts": ["003 §TCP编程", /TCP编程/, /Hello world!/],
    "udp_server.ts": ["003 §UDP编程", /UDP编程/, /ctime\(\)/],
    "udp_client.ts": ["003 §UDP编程", /UDP编程/, /udpClient\.sendto/],
    "hello_server.ts": ["002 §4", /# 4\./, /except ConnectionResetError/],
    "udp_typed_server.ts": ["003 §UDP编程", /UDP编程/, /input\(">>>"\)/],
  };
  for (const [name, [cite, heading, code]] of Object.entries(expected)) {
    const text = await Deno.readTextFile(
      new URL(`../scripts/basics/${name}`, import.meta.url),
    );
    assert.ok(text.includes(cite), `${name} should cite ${cite}`);
    const tutorial = files.get(cite.slice(0, 3)) ?? "";
    const at = tutorial.search(heading);
    assert.ok(at >= 0, `${cite}: heading not found`);
    assert.match(tutorial.slice(at), code, `${name}: ${cite}`);
  }
});

// ---------------------------------------------------------------------------
// echo_server.ts (001 §3)
// ---------------------------------------------------------------------------

const PY_ECHO_HALF_CLOSE = `
import socket, sys, threading
data = sys.stdin.buffer.read()
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
def send():
    s.sendall(data)
    s.shutdown(socket.SHUT_WR)
sender = threading.Thread(target=send)
sender.start()
got = bytearray()
while chunk := s.recv(65536):
    got += chunk
sender.join()
sys.stdout.buffer.write(got)
`;

const PY_RESET = `
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
s.sendall(b"x" * 200000)
s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
s.close()
`;

// 50 clients that connect and reset at once, most before the server has
// accepted them (Deno's accept() then throws; the loop must go on).
const PY_RESET_STORM = `
import socket, struct, sys
for _ in range(50):
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.close()
`;

/** Runs PY_RESET_STORM against `port` (Python must be there). */
async function resetStorm(port: number | string) {
  const storm = await python(PY_RESET_STORM, [port]);
  assert.equal(storm.code, 0, storm.stderr);
}

Deno.test({
  name: "basics/echo_server: nc gets its lines back, byte for byte",
  ignore: !haveNc,
  async fn() {
    await using server = await startScript("basics/echo_server.ts", ["0"]);
    assert.equal(
      server.listeningLine,
      `Listening on tcp://${HOST}:${server.port}`,
    );
    const sent = "hello\nwörld \x00\xff\n";
    const result = await runTool("nc", ["-N", HOST, String(server.port)], sent);
    assert.deepEqual(result.stdout, encoder.encode(sent));
  },
});

Deno.test({
  name:
    "basics/echo_server: 2 MiB of binary from Python, echoed whole after its half-close",
  ignore: !havePython,
  async fn() {
    await using server = await startScript("basics/echo_server.ts", ["0"]);
    const data = randomBytes(2 * 1024 * 1024);
    const result = await python(PY_ECHO_HALF_CLOSE, [server.port], data);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout.length, data.length);
    assert.ok(sha256(result.stdout) === sha256(data), "echo differs");
  },
});

Deno.test({
  name:
    "basics/echo_server: a silent client, a reset one and a reset storm do not stop the next",
  ignore: !havePython || !haveNc,
  async fn() {
    await using server = await startScript("basics/echo_server.ts", ["0"]);
    using silent = await Deno.connect({ hostname: HOST, port: server.port });
    const reset = await python(PY_RESET, [server.port]);
    assert.equal(reset.code, 0, reset.stderr);
    await resetStorm(server.port);
    const result = await runTool(
      "nc",
      ["-N", HOST, String(server.port)],
      "ok\n",
    );
    assert.equal(decoder.decode(result.stdout), "ok\n");
    // The silent client is still being served, too.
    await silent.write(encoder.encode("late\n"));
    await silent.closeWrite();
    assert.equal(decoder.decode(await readAll(silent)), "late\n");
  },
});

// ---------------------------------------------------------------------------
// tcp_server.ts (000 §4.1) and tcp_client.ts (000 §4.2)
// ---------------------------------------------------------------------------

// Sends a CRLF line, then a line whose "é" is cut in two by a pause, and
// prints each answer line.
const PY_LINES_CLIENT = `
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
answers = s.makefile("rb")
s.sendall(b"hi\\r\\n")
sys.stdout.buffer.write(answers.readline())
s.sendall(b"caf\\xc3")
time.sleep(0.2)
s.sendall(b"\\xa9\\n")
sys.stdout.buffer.write(answers.readline())
s.close()
`;

// Sends a long line with no newline and reports what came back.
const PY_LONG_LINE = `
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
try:
    s.sendall(b"y" * 200000)
    print("closed" if s.recv(100) == b"" else "answered")
except (ConnectionResetError, BrokenPipeError):
    print("closed")
`;

Deno.test({
  name:
    "basics/tcp_server: answers each line with the next typed line; tcp_client reads it",
  ignore: !havePython || !haveNc,
  async fn() {
    await using server = await startScriptWithInput("basics/tcp_server.ts", [
      "0",
    ]);
    const port = server.match[1];
    await resetStorm(port); // clients that reset in the queue are skipped
    await server.write("answer one\nanswer twö\n");
    const first = await python(PY_LINES_CLIENT, [port]);
    assert.equal(first.code, 0, first.stderr);
    assert.equal(decoder.decode(first.stdout), "answer one\nanswer twö\n");

    // A line over the limit costs that client only.
    const long = await python(PY_LONG_LINE, [port]);
    assert.equal(decoder.decode(long.stdout), "closed\n", long.stderr);

    await server.write("third answer\n");
    const client = await runScript(
      "basics/tcp_client.ts",
      [port, "from the basic client"],
      { allow: ["--allow-net=127.0.0.1"] },
    );
    assert.deepEqual([client.code, client.stdout], [0, "third answer\n"]);

    // Once stdin ends there is nobody to answer: the next line ends it all.
    await server.endInput();
    const last = await runTool("nc", ["-N", HOST, port], "anyone?\n");
    assert.equal(decoder.decode(last.stdout), "");
    const output = await server.stop();
    assert.equal(output.code, 0, output.stderr);
    assert.equal(
      output.stdout,
      `Listening on tcp://${HOST}:${port}\nclient: hi\nclient: café\n` +
        "client: from the basic client\nclient: anyone?\n",
    );
    assert.match(output.stderr, /client dropped: line too long/);
  },
});

// Accepts one client, reads its line, answers "héllo back" with the "é"
// cut in two, then more text that is not part of the reply.
const PY_SPLIT_REPLY = `
import socket, sys, time
srv = socket.create_server(("127.0.0.1", 0))
srv.settimeout(20)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
conn.settimeout(20)
line = conn.makefile("rb").readline()
conn.sendall(b"h\\xc3")
time.sleep(0.2)
conn.sendall(b"\\xa9llo back\\nnot this\\n")
print(line.hex(), flush=True)
conn.close()
`;

Deno.test({
  name:
    "basics/tcp_client: sends one line, prints the reply up to its newline, whole characters",
  ignore: !havePython,
  async fn() {
    await using peer = await startPython(PY_SPLIT_REPLY);
    const client = await runScript(
      "basics/tcp_client.ts",
      [String(peer.port), "Grüße"],
      { allow: ["--allow-net=127.0.0.1"] },
    );
    assert.deepEqual([client.code, client.stdout], [0, "héllo back\n"]);
    const output = await peer.stop();
    const sentHex = output.stdout.split("\n")[1];
    assert.equal(sentHex, hex("Grüße\n"));
  },
});

Deno.test("basics/tcp_client: refused is one line on stderr and exit 1", async () => {
  const port = closedPort();
  const client = await runScript("basics/tcp_client.ts", [String(port)], {
    allow: ["--allow-net=127.0.0.1"],
  });
  assert.equal(client.code, 1);
  assert.match(client.stderr, /^cannot connect to port \d+: .*refused.*\n$/i);
});

// ---------------------------------------------------------------------------
// multi_connect.ts (000 §4.3)
// ---------------------------------------------------------------------------

// "echo": answers the first line with itself; "silent": never answers.
const PY_ONE_CLIENT = `
import socket, sys, time
srv = socket.create_server(("127.0.0.1", 0))
srv.settimeout(20)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
conn.settimeout(20)
line = conn.makefile("rb").readline()
if sys.argv[1] == "echo":
    conn.sendall(line)
else:
    time.sleep(10)
conn.close()
`;

Deno.test({
  name:
    "basics/multi_connect: a new socket per server; answered, refused and silent ones in order",
  ignore: !havePython,
  async fn() {
    await using echo = await startScript("basics/echo_server.ts", ["0"]);
    await using pyEcho = await startPython(PY_ONE_CLIENT, ["echo"]);
    await using silent = await startPython(PY_ONE_CLIENT, ["silent"]);
    const refused = closedPort();
    const started = performance.now();
    const result = await runScript("basics/multi_connect.ts", [
      `${HOST}:${echo.port}`,
      `${HOST}:${refused}`,
      `${HOST}:${silent.port}`,
      `${HOST}:${pyEcho.port}`,
    ]);
    const seconds = (performance.now() - started) / 1000;
    assert.equal(result.code, 0, result.stderr);
    const lines = result.stdout.split("\n");
    assert.equal(lines[0], `${HOST}:${echo.port} answered: Hello, ${HOST}!`);
    assert.match(
      lines[1],
      new RegExp(`^${HOST}:${refused} failed: .*refused`, "i"),
    );
    assert.equal(
      lines[2],
      `${HOST}:${silent.port} failed: no answer within 2 s`,
    );
    assert.equal(lines[3], `${HOST}:${pyEcho.port} answered: Hello, ${HOST}!`);
    assert.deepEqual(lines.slice(4), ["All connections have been closed.", ""]);
    assert.ok(seconds >= 1.9 && seconds < 15, `took ${seconds} s`);
  },
});

// ---------------------------------------------------------------------------
// timeout_client.ts (000 §4.5)
// ---------------------------------------------------------------------------

Deno.test({
  name:
    "basics/timeout_client: a reply in time is printed; a silent server is one line after 1 s",
  ignore: !havePython,
  async fn() {
    await using echo = await startPython(PY_ONE_CLIENT, ["echo"]);
    const answered = await runScript(
      "basics/timeout_client.ts",
      [String(echo.port), "ping ✓"],
      { allow: ["--allow-net=127.0.0.1"] },
    );
    assert.deepEqual([answered.code, answered.stdout], [0, "ping ✓\n"]);

    await using silent = await startPython(PY_ONE_CLIENT, ["silent"]);
    const started = performance.now();
    const result = await runScript(
      "basics/timeout_client.ts",
      [String(silent.port)],
      { allow: ["--allow-net=127.0.0.1"] },
    );
    const seconds = (performance.now() - started) / 1000;
    assert.deepEqual(
      [result.code, result.stdout, result.stderr],
      [1, "", "no reply: timed out after 1 s\n"],
    );
    assert.ok(seconds >= 0.9 && seconds < 10, `took ${seconds} s`);
  },
});

Deno.test("basics/timeout_client: a connect that never completes, and a refused one", async () => {
  const unanswered = await startUnansweredPort();
  try {
    const result = await runScript(
      "basics/timeout_client.ts",
      [String(unanswered.addr.port)],
      { allow: ["--allow-net=127.0.0.1"] },
    );
    assert.deepEqual(
      [result.code, result.stderr],
      [1, "connect timed out after 1 s\n"],
    );
  } finally {
    unanswered.close();
  }
  const refused = await runScript("basics/timeout_client.ts", [
    String(closedPort()),
  ], { allow: ["--allow-net=127.0.0.1"] });
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /^[^\n]*refused[^\n]*\n$/i);
});

// ---------------------------------------------------------------------------
// upload_server.ts and upload_client.ts (000 §4.4): the SPEC's wire format
// ---------------------------------------------------------------------------

async function startBasicUploadServer(dir: string) {
  return await startScript("basics/upload_server.ts", ["0", dir], {
    allow: ["--allow-net", `--allow-write=${dir}`],
  });
}

Deno.test({
  name:
    "basics/upload_server: nc's upload is stored; bad headers, unsafe names, 409 and 413 refused",
  ignore: !haveNc,
  async fn() {
    const top = await Deno.makeTempDir();
    const dir = `${top}/uploads`;
    try {
      await using server = await startBasicUploadServer(dir);
      const port = String(server.port);
      const nc = async (input: string) =>
        decoder.decode((await runTool("nc", ["-N", HOST, port], input)).stdout);
      if (havePython) await resetStorm(port); // clients that reset in the queue

      assert.equal(
        await nc("UPLOAD 5 hi.txt\nhello"),
        `200 OK 5 ${sha256(encoder.encode("hello"))}\n`,
      );
      assert.equal(await Deno.readTextFile(`${dir}/hi.txt`), "hello");
      assert.equal(
        await nc("UPLOAD 0 empty\r\n"),
        `200 OK 0 ${sha256(new Uint8Array())}\n`,
      );
      assert.equal((await Deno.readFile(`${dir}/empty`)).length, 0);

      for (const name of ["../evil", "a/b", "a\\b", "/tmp/evil", ".", ".."]) {
        assert.equal(
          await nc(`UPLOAD 4 ${name}\n`),
          "400 bad header or name\n",
        );
      }
      for (const header of ["GARBAGE\n", "UPLOAD -1 x\n", "UPLOAD 5\n", "\n"]) {
        assert.equal(await nc(header), "400 bad header or name\n", header);
      }
      assert.equal(
        await nc("UPLOAD 5 hi.txt\nHELLO"),
        "409 cannot store that name\n",
      );
      assert.equal(await Deno.readTextFile(`${dir}/hi.txt`), "hello");
      assert.equal(
        await nc(`UPLOAD ${64 * 2 ** 20 + 1} big\n`),
        "413 too large: 64 MiB at most\n",
      );
      // A client that leaves halfway gets nothing stored under the name.
      assert.equal(await nc("UPLOAD 10 short\nabc"), "");
      assert.ok(!(await exists(`${dir}/short`)));
      assert.ok(!(await exists(`${top}/evil`)));
      const names = [];
      for await (const entry of Deno.readDir(dir)) names.push(entry.name);
      assert.deepEqual(names.sort(), ["empty", "hi.txt"]);
    } finally {
      await Deno.remove(top, { recursive: true });
    }
  },
});

Deno.test("basics/upload_server: the full upload_client verifies a binary upload (name with spaces)", async () => {
  const upload = await Deno.makeTempDir();
  const data = randomBytes(300_000);
  const source = await tempFile("source.bin", data);
  try {
    await using server = await startBasicUploadServer(upload);
    const result = await runScript(
      "upload_client.ts",
      ["--port", String(server.port), "--name", "two words ü.bin", source.path],
      { allow: ["--allow-net", `--allow-read=${source.dir}`] },
    );
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.stdout, `200 OK ${data.length} ${sha256(data)}\n`);
    assert.deepEqual(await Deno.readFile(`${upload}/two words ü.bin`), data);
  } finally {
    await Deno.remove(upload, { recursive: true });
    await Deno.remove(source.dir, { recursive: true });
  }
});

// Sends the header one byte at a time, then the body; prints the reply.
const PY_SLOW_HEADER = `
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
for byte in b"UPLOAD 6 slow.txt\\n":
    s.sendall(bytes([byte]))
    time.sleep(0.005)
s.sendall(b"sl")
time.sleep(0.1)
s.sendall(b"ow\\n\\xff")
sys.stdout.buffer.write(s.makefile("rb").readline())
`;

Deno.test({
  name:
    "basics/upload_server: a header trickled byte by byte and a body in pieces",
  ignore: !havePython,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      await using server = await startBasicUploadServer(dir);
      const result = await python(PY_SLOW_HEADER, [server.port]);
      const body = new Uint8Array([...encoder.encode("slow\n"), 0xff]);
      assert.equal(
        decoder.decode(result.stdout),
        `200 OK 6 ${sha256(body)}\n`,
        result.stderr,
      );
      assert.deepEqual(await Deno.readFile(`${dir}/slow.txt`), body);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("basics/upload_client: against the full upload_server, then refused (409) by it", async () => {
  const upload = await Deno.makeTempDir();
  const data = randomBytes(200_000);
  const source = await tempFile("photo.jpg", data);
  try {
    await using server = await startScript(
      "upload_server.ts",
      ["--port", "0", "--dir", upload],
      {
        allow: [
          "--allow-net",
          `--allow-read=${upload}`,
          `--allow-write=${upload}`,
        ],
      },
    );
    const allow = ["--allow-net=127.0.0.1", `--allow-read=${source.dir}`];
    const args = [source.path, String(server.port)];
    const first = await runScript("basics/upload_client.ts", args, { allow });
    assert.equal(first.code, 0, first.stderr);
    assert.equal(first.stdout, `200 OK ${data.length} ${sha256(data)}\n`);
    assert.deepEqual(await Deno.readFile(`${upload}/photo.jpg`), data);

    const again = await runScript("basics/upload_client.ts", args, { allow });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /^upload failed: 409 .*\n$/);
  } finally {
    await Deno.remove(upload, { recursive: true });
    await Deno.remove(source.dir, { recursive: true });
  }
});

// Receives one upload, prints exactly what arrived (hex), answers with a
// wrong hash.
const PY_FAKE_UPLOAD_SERVER = `
import socket, sys
srv = socket.create_server(("127.0.0.1", 0))
srv.settimeout(20)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
conn.settimeout(20)
f = conn.makefile("rb")
header = f.readline()
size = int(header.split()[1])
body = f.read(size)
print((header + body).hex(), flush=True)
conn.sendall(b"200 OK %d %s\\n" % (size, b"0" * 64))
conn.close()
`;

Deno.test({
  name:
    "basics/upload_client: sends the exact wire format; a wrong hash is a failure",
  ignore: !havePython,
  async fn() {
    const source = await tempFile("notes ü.txt", encoder.encode("hello\n"));
    try {
      await using peer = await startPython(PY_FAKE_UPLOAD_SERVER);
      const result = await runScript(
        "basics/upload_client.ts",
        [source.path, String(peer.port)],
        { allow: ["--allow-net=127.0.0.1", `--allow-read=${source.dir}`] },
      );
      assert.equal(result.code, 1);
      assert.equal(
        result.stderr,
        `upload failed: 200 OK 6 ${"0".repeat(64)}\n`,
      );
      const output = await peer.stop();
      assert.equal(
        output.stdout.split("\n")[1],
        hex("UPLOAD 6 notes ü.txt\nhello\n"),
      );
    } finally {
      await Deno.remove(source.dir, { recursive: true });
    }
  },
});

Deno.test("basics/upload pair: the basic client to the basic server", async () => {
  const upload = await Deno.makeTempDir();
  const data = randomBytes(100_000);
  const source = await tempFile("pair.bin", data);
  try {
    await using server = await startBasicUploadServer(upload);
    const result = await runScript(
      "basics/upload_client.ts",
      [source.path, String(server.port)],
      { allow: ["--allow-net=127.0.0.1", `--allow-read=${source.dir}`] },
    );
    assert.equal(result.stdout, `200 OK ${data.length} ${sha256(data)}\n`);
    assert.deepEqual(await Deno.readFile(`${upload}/pair.bin`), data);
  } finally {
    await Deno.remove(upload, { recursive: true });
    await Deno.remove(source.dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------
// hello_server.ts (002 §4)
// ---------------------------------------------------------------------------

// A CRLF line, an "é" cut in two by a pause, a client that resets, a line
// over the limit; each prints what it got.
const PY_HELLO = `
import socket, struct, sys, time
port = int(sys.argv[1])
s = socket.create_connection(("127.0.0.1", port), timeout=20)
answers = s.makefile("rb")
s.sendall(b"hi\\r\\n")
sys.stdout.buffer.write(answers.readline())
s.sendall(b"caf\\xc3")
time.sleep(0.2)
s.sendall(b"\\xa9\\n\\xff\\n")
sys.stdout.buffer.write(answers.readline() + answers.readline())
reset = socket.create_connection(("127.0.0.1", port), timeout=20)
reset.sendall(b"bye")
time.sleep(0.1)
reset.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
reset.close()
long = socket.create_connection(("127.0.0.1", port), timeout=20)
try:
    long.sendall(b"y" * 200000)
    print("closed" if long.recv(100) == b"" else "answered")
except (ConnectionResetError, BrokenPipeError):
    print("closed")
s.sendall(b"still served\\n")
sys.stdout.buffer.write(answers.readline())
`;

Deno.test({
  name:
    "basics/hello_server: each line greeted, a cut character whole, a reset or a long line costs its client only",
  ignore: !havePython || !haveNc,
  async fn() {
    await using server = await startScript("basics/hello_server.ts", ["0"]);
    const result = await python(PY_HELLO, [server.port]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(
      decoder.decode(result.stdout),
      'Hello client! You sent me "hi".\n' +
        'Hello client! You sent me "café".\n' +
        'Hello client! You sent me "\uFFFD".\n' +
        "closed\n" +
        'Hello client! You sent me "still served".\n',
    );
    // nc -N half-closes after its input: a last line without "\n" too.
    const nc = await runTool("nc", ["-N", HOST, String(server.port)], "a\nb");
    assert.equal(
      decoder.decode(nc.stdout),
      'Hello client! You sent me "a".\nHello client! You sent me "b".\n',
    );
    const output = await server.stop();
    assert.match(output.stderr, /client dropped: line too long/);
    assert.match(output.stderr, /client dropped: Connection reset/);
  },
});

// udp_typed_server.ts (003 §UDP编程, the second server)
// ---------------------------------------------------------------------------

// Sends "hello", then an empty datagram (the tutorial's server stops on
// one), each answered with the next typed line after time.ctime()'s stamp;
// then bytes that are not UTF-8 with an escape sequence in them.
const PY_UDP_TYPED = `
import socket, sys, time
server = ("127.0.0.1", int(sys.argv[1]))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(5)
print(s.getsockname()[1])
for payload in [b"hello", b""]:
    before = time.ctime()
    s.sendto(payload, server)
    reply, sender = s.recvfrom(70000)
    after = time.ctime()
    assert sender == server, sender
    stamp, answer = reply.split(b"]:", 1)
    assert stamp[1:].decode() in (before, after), stamp
    print(answer.decode())
s.sendto(b"\\xff\\x1b[2J", server)
`;

Deno.test({
  name:
    "basics/udp_typed_server: each datagram, the empty one too, gets the next typed line; stdin's end ends it",
  ignore: !havePython,
  async fn() {
    await using server = await startScriptWithInput(
      "basics/udp_typed_server.ts",
      ["0"],
      UDP,
    );
    const port = server.match[1];
    await server.write("one\ntwö\n");
    await server.endInput();
    const result = await python(PY_UDP_TYPED, [port]);
    assert.equal(result.code, 0, result.stderr);
    const [from, ...answers] = decoder.decode(result.stdout).split("\n");
    assert.deepEqual(answers, ["one", "twö", ""]);
    // The third datagram finds no answer left: the server stops, status 0.
    const status = await server.child.status;
    assert.equal(status.code, 0);
    const output = await server.stop();
    assert.equal(
      output.stdout,
      `Listening on udp://${HOST}:${port}\n` +
        `${HOST}:${from}: hello\n${HOST}:${from}: \n` +
        `${HOST}:${from}: \uFFFD?[2J\n`,
    );
  },
});

// udp_server.ts and udp_client.ts (003 §UDP编程)
// ---------------------------------------------------------------------------

const STAMP =
  "\\[(Sun|Mon|Tue|Wed|Thu|Fri|Sat) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ 123]\\d \\d\\d:\\d\\d:\\d\\d \\d{4}\\]";

// Sends each payload, checks the reply is time.ctime()'s stamp (read just
// before or just after) and the payload, cut to 65,507 bytes, from the
// server's own address.
const PY_UDP_CHECK = `
import socket, sys, time
server = ("127.0.0.1", int(sys.argv[1]))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(5)
for payload in [b"hello", b"", b"\\xff\\x00\\xfe caf\\xc3", b"x" * 65507]:
    before = time.ctime()
    s.sendto(payload, server)
    reply, sender = s.recvfrom(70000)
    after = time.ctime()
    assert sender == server, sender
    options = [("[%s]" % t).encode() + payload for t in (before, after)]
    assert reply in [o[:65507] for o in options], reply[:60]
    print("ok", len(reply))
`;

Deno.test({
  name:
    "basics/udp_server: Python gets time.ctime()'s stamp and the bytes unchanged, empty and 64 KiB too",
  ignore: !havePython,
  async fn() {
    await using server = await startScript("basics/udp_server.ts", ["0"], {
      allow: UDP,
    });
    assert.equal(
      server.listeningLine,
      `Listening on udp://${HOST}:${server.port}`,
    );
    const result = await python(PY_UDP_CHECK, [server.port]);
    assert.equal(result.code, 0, result.stderr);
    assert.equal(
      decoder.decode(result.stdout),
      "ok 31\nok 26\nok 34\nok 65507\n",
    );
  },
});

Deno.test({
  name: "basics/udp_server: the full udp_client and nc -u get their answers",
  ignore: !haveNc,
  async fn() {
    await using server = await startScript("basics/udp_server.ts", ["0"], {
      allow: UDP,
    });
    const full = await runScript(
      "udp_client.ts",
      ["--port", String(server.port), "hello", "there"],
      { allow: UDP },
    );
    assert.equal(full.code, 0, full.stderr);
    assert.match(full.stdout, new RegExp(`^${STAMP}hello there\n$`));
    const nc = await runTool(
      "nc",
      ["-u", "-w", "5", "-W", "1", HOST, String(server.port)],
      "from nc",
    );
    assert.match(decoder.decode(nc.stdout), new RegExp(`^${STAMP}from nc$`));
  },
});

Deno.test("basics/udp_client: each stdin line against the full udp_server, printed as it came", async () => {
  await using server = await startScript("udp_server.ts", ["--port", "0"], {
    allow: UDP,
  });
  const result = await runScript(
    "basics/udp_client.ts",
    [String(server.port)],
    {
      allow: ["--unstable-net", "--allow-net=127.0.0.1"],
      stdin: "one\ntwö\n\nlast without newline",
    },
  );
  assert.equal(result.code, 0, result.stderr);
  assert.match(
    result.stdout,
    new RegExp(
      `^${STAMP}one\n${STAMP}twö\n${STAMP}\n${STAMP}last without newline\n$`,
    ),
  );
});

Deno.test("basics/udp pair: the basic client to the basic server", async () => {
  await using server = await startScript("basics/udp_server.ts", ["0"], {
    allow: UDP,
  });
  const result = await runScript(
    "basics/udp_client.ts",
    [String(server.port)],
    {
      allow: UDP,
      stdin: "ping\n",
    },
  );
  assert.match(result.stdout, new RegExp(`^${STAMP}ping\n$`));
});

// Answers each datagram from a second socket first ("decoy"), then, a
// moment later, from its own address ("real:" and the datagram).
const PY_UDP_DECOY = `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.settimeout(20)
decoy = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
decoy.bind(("127.0.0.1", 0))
print(s.getsockname()[1], flush=True)
while True:
    data, sender = s.recvfrom(65536)
    decoy.sendto(b"decoy", sender)
    import time; time.sleep(0.2)
    s.sendto(b"real:" + data, sender)
`;

Deno.test({
  name:
    "basics/udp_client: takes only the server's datagram; no reply is one line after 2 s",
  ignore: !havePython,
  async fn() {
    await using peer = await startPython(PY_UDP_DECOY);
    const result = await runScript(
      "basics/udp_client.ts",
      [String(peer.port)],
      {
        allow: UDP,
        stdin: "a\nb\n",
      },
    );
    assert.deepEqual([result.code, result.stdout], [0, "real:a\nreal:b\n"]);

    const mute = Deno.listenDatagram({
      transport: "udp",
      hostname: HOST,
      port: 0,
    });
    const started = performance.now();
    const silent = await runScript(
      "basics/udp_client.ts",
      [String((mute.addr as Deno.NetAddr).port)],
      { allow: UDP, stdin: "anyone?\n" },
    ).finally(() => mute.close());
    const seconds = (performance.now() - started) / 1000;
    assert.deepEqual(
      [silent.code, silent.stdout, silent.stderr],
      [1, "", "no reply within 2 s\n"],
    );
    assert.ok(seconds >= 1.9 && seconds < 15, `took ${seconds} s`);
  },
});

// ---------------------------------------------------------------------------
// http_get.ts (003 §TCP编程, client)
// ---------------------------------------------------------------------------

Deno.test({
  name:
    "basics/http_get: a binary file from Python's http.server, saved byte for byte",
  ignore: !havePython,
  async fn() {
    const site = await Deno.makeTempDir();
    const out = await Deno.makeTempDir();
    const data = randomBytes(500_000);
    await Deno.writeFile(`${site}/data.bin`, data);
    try {
      await using server = await startPeer(
        "python3",
        ["-u", "-m", "http.server", "0", "--bind", HOST, "--directory", site],
        /Serving HTTP on \S+ port (\d+)/,
      );
      const result = await runScript(
        "basics/http_get.ts",
        [`http://${HOST}:${server.match[1]}/data.bin`, `${out}/page.bin`],
        { allow: ["--allow-net=127.0.0.1", `--allow-write=${out}/page.bin`] },
      );
      assert.equal(result.code, 0, result.stderr);
      assert.match(result.stdout, /^HTTP\/1\.0 200 OK\r\n/);
      assert.match(
        result.stdout,
        new RegExp(`\r\nContent-Length: ${data.length}\r?\n`),
      );
      assert.deepEqual(await Deno.readFile(`${out}/page.bin`), data);
    } finally {
      await Deno.remove(site, { recursive: true });
      await Deno.remove(out, { recursive: true });
    }
  },
});

// Records the request, answers in small pieces with a body that holds blank
// lines and invalid UTF-8, then closes.
const PY_RAW_HTTP = `
import socket, sys, time
srv = socket.create_server(("127.0.0.1", 0))
srv.settimeout(20)
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
conn.settimeout(20)
request = b""
while b"\\r\\n\\r\\n" not in request:
    request += conn.recv(1024)
response = sys.argv[1].encode("latin-1")
for i in range(0, len(response), 7):
    conn.sendall(response[i:i + 7])
    time.sleep(0.002)
print(request.hex(), flush=True)
conn.close()
`;

Deno.test({
  name:
    "basics/http_get: the exact request, the head on stdout, the body split at the first blank line",
  ignore: !havePython,
  async fn() {
    const out = await Deno.makeTempDir();
    const head = "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream";
    const body = "first\r\n\r\nsecond \xff\xfe\r\n\r\n";
    try {
      await using peer = await startPython(PY_RAW_HTTP, [
        `${head}\r\n\r\n${body}`,
      ]);
      const result = await runScript(
        "basics/http_get.ts",
        [`http://${HOST}:${peer.port}/a%20b?x=1`, `${out}/page`],
        { allow: ["--allow-net=127.0.0.1", `--allow-write=${out}`] },
      );
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.stdout, `${head}\n`);
      assert.deepEqual(
        await Deno.readFile(`${out}/page`),
        Uint8Array.from(body, (c) => c.charCodeAt(0)),
      );
      const request = (await peer.stop()).stdout.split("\n")[1];
      assert.equal(
        request,
        hex(
          `GET /a%20b?x=1 HTTP/1.0\r\nHost: ${HOST}:${peer.port}\r\n` +
            "Connection: close\r\n\r\n",
        ),
      );

      await using junk = await startPython(PY_RAW_HTTP, ["no blank line here"]);
      const bad = await runScript(
        "basics/http_get.ts",
        [`http://${HOST}:${junk.port}/`, `${out}/junk`],
        { allow: ["--allow-net=127.0.0.1", `--allow-write=${out}`] },
      );
      assert.deepEqual(
        [bad.code, bad.stderr],
        [1, "no blank line after the head: not an HTTP response\n"],
      );
      assert.ok(!(await exists(`${out}/junk`)));
    } finally {
      await Deno.remove(out, { recursive: true });
    }
  },
});

// ---------------------------------------------------------------------------
// http_hello_server.ts (003 §TCP编程, server) and flask_hello.ts (001 §4)
// ---------------------------------------------------------------------------

const HELLO_RESPONSE = "HTTP/1.1 200 OK\r\n" +
  "Content-Type: text/html; charset=utf-8\r\n" +
  "Content-Length: 21\r\nConnection: close\r\n\r\n<h1>Hello world!</h1>";

// A GET through http.client; prints status, reason, headers and body.
const PY_HTTP_CLIENT = `
import http.client, json, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=20)
c.request("GET", sys.argv[2])
r = c.getresponse()
print(json.dumps([r.status, r.reason, r.getheader("Content-Type"), r.read().decode()]))
`;

// The request head one byte at a time; prints the whole answer.
const PY_SLOW_REQUEST = `
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
for byte in b"GET / HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n":
    s.sendall(bytes([byte]))
    time.sleep(0.005)
got = b""
while chunk := s.recv(4096):
    got += chunk
sys.stdout.buffer.write(got)
`;

// A request head that never ends (20 KiB of headers): what comes back?
const PY_HUGE_HEAD = `
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
try:
    s.sendall(b"GET / HTTP/1.1\\r\\n" + b"X-Filler: aaaaaaaaaa\\r\\n" * 1000)
    print("closed" if s.recv(100) == b"" else "answered")
except (ConnectionResetError, BrokenPipeError):
    print("closed")
`;

Deno.test({
  name:
    "basics/http_hello_server: curl gets the exact response, http.client parses it",
  ignore: !haveCurl || !havePython,
  async fn() {
    await using server = await startScript("basics/http_hello_server.ts", [
      "0",
    ]);
    assert.equal(
      server.listeningLine,
      `Listening on http://${HOST}:${server.port}`,
    );
    const url = `http://${HOST}:${server.port}/`;
    const curl = await runTool("curl", ["-si", "--max-time", "10", url]);
    assert.equal(decoder.decode(curl.stdout), HELLO_RESPONSE);
    const parsed = await python(PY_HTTP_CLIENT, [server.port, "/any/path"]);
    assert.deepEqual(JSON.parse(decoder.decode(parsed.stdout)), [
      200,
      "OK",
      "text/html; charset=utf-8",
      "<h1>Hello world!</h1>",
    ]);
  },
});

Deno.test({
  name:
    "basics/http_hello_server: a trickled request, a silent client, a reset storm, a huge head",
  ignore: !haveCurl || !havePython,
  async fn() {
    await using server = await startScript("basics/http_hello_server.ts", [
      "0",
    ]);
    using silent = await Deno.connect({ hostname: HOST, port: server.port });
    await resetStorm(server.port);
    const slow = await python(PY_SLOW_REQUEST, [server.port]);
    assert.equal(decoder.decode(slow.stdout), HELLO_RESPONSE);
    const huge = await python(PY_HUGE_HEAD, [server.port]);
    assert.equal(decoder.decode(huge.stdout), "closed\n", huge.stderr);
    const url = `http://${HOST}:${server.port}/`;
    const curl = await runTool("curl", ["-s", "--max-time", "10", url]);
    assert.equal(decoder.decode(curl.stdout), "<h1>Hello world!</h1>");
    // The silent client still gets its page once its request is complete.
    await silent.write(encoder.encode("GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
    assert.equal(decoder.decode(await readAll(silent)), HELLO_RESPONSE);
  },
});

Deno.test({
  name:
    "basics/flask_hello: '/' is Hello World! as text/html, other paths 404 (curl, http.client)",
  ignore: !haveCurl || !havePython,
  async fn() {
    await using server = await startScript("basics/flask_hello.ts", ["0"]);
    assert.equal(
      server.listeningLine,
      `Listening on http://${HOST}:${server.port}`,
    );
    const base = `http://${HOST}:${server.port}`;
    const curl = await runTool("curl", [
      "-s",
      "--max-time",
      "10",
      "-w",
      " %{http_code} %{content_type}",
      `${base}/`,
    ]);
    assert.equal(
      decoder.decode(curl.stdout),
      "Hello World! 200 text/html; charset=utf-8",
    );
    const missing = await runTool("curl", [
      "-s",
      "-o",
      "/dev/null",
      "--max-time",
      "10",
      "-w",
      "%{http_code}",
      `${base}/nope`,
    ]);
    assert.equal(decoder.decode(missing.stdout), "404");
    const parsed = await python(PY_HTTP_CLIENT, [server.port, "/"]);
    assert.deepEqual(JSON.parse(decoder.decode(parsed.stdout)), [
      200,
      "OK",
      "text/html; charset=utf-8",
      "Hello World!",
    ]);
  },
});
