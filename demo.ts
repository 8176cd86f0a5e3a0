/**
 * A guided tour of the collection: starts each server on a free port exactly
 * as its header says, drives it with its clients (and with curl, dig and
 * redis-server when they are installed), and prints what your terminals
 * would show: each command in grey, then its output. About 5 seconds, on
 * loopback only; every process it starts is stopped by PID with SIGTERM, and
 * its scratch folder is removed at the end, on Ctrl-C too.
 *
 * Run:    deno task demo
 *    or:  deno run --allow-net=127.0.0.1 --allow-run --allow-read=. --allow-write=. demo.ts
 *         (from this folder: the scratch folder, demo-XXXXXX, is made here
 *         so that the commands shown are short and work when pasted)
 * Try it: run the commands it shows yourself, in terminals of your own (a
 *         server's --port 0 picks a new port: give that one to its clients)
 *
 * 000 §4.1's server and §4.2's client are two programs for you to start by
 * hand, one per terminal; here one program plays every terminal: `A> text`
 * is typed into terminal A, `A| text` is what terminal A prints. It checks
 * itself: a part that goes otherwise than its lesson (an exit status, a line
 * that never comes) is one line starting with "!", and the tour exits 1.
 * --allow-run stays whole: Deno matches `--allow-run=deno` against the deno
 * in PATH, not Deno.execPath().
 *
 * Read first: the tour at the bottom, one section per lesson; Program above
 * it starts one process and waits for lines of its output.
 */
import { basename, join } from "node:path";
import { makeCertificates } from "./scripts/make_cert.ts";
import { raceTimeout, TIMED_OUT } from "./lib/deadline.ts";

const root = import.meta.dirname!; // every command runs here
const deno = Deno.execPath();
// Grey commands and bold headings on a terminal; plain text in a pipe or
// a file, or when NO_COLOR is set (Deno.noColor reads it: no --allow-env).
const color = Deno.stdout.isTerminal() && !Deno.noColor;
const dim = (text: string) => color ? `\x1b[2m${text}\x1b[0m` : text;
const bold = (text: string) => color ? `\x1b[1m${text}\x1b[0m` : text;
const WAIT_MS = 15_000; // for any expected line: generous on a busy machine

/**
 * Arguments written as a command line: the words of the text, where each
 * `${value}` joins the word it touches (so `${"two words"}` is one argument).
 */
function argv(text: TemplateStringsArray, ...values: unknown[]): string[] {
  const words: string[] = [];
  let word: string | undefined;
  text.forEach((literal, i) => {
    for (const char of literal) {
      if (char !== " " && char !== "\n") word = (word ?? "") + char;
      else if (word !== undefined) {
        words.push(word);
        word = undefined;
      }
    }
    if (i < values.length) word = (word ?? "") + String(values[i]);
  });
  if (word !== undefined) words.push(word);
  return words;
}

/** Prints a command as you would paste it, quoted where a shell needs it. */
function show(command: string[], note = "") {
  const quoted = command.map((arg) =>
    /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`
  );
  console.log(dim(`$ ${quoted.join(" ")}${note}`));
}

/** Everything started and not yet stopped: what Ctrl-C must stop. */
const running = new Set<{ stop(): Promise<void> }>();
let interrupted = false;

/**
 * Lines from something running (a process, a WebSocket), kept so that the
 * tour can wait for one, and printed as they arrive when it has a label.
 */
class Watched {
  readonly lines: string[] = [];
  ended = false;
  #changed = Promise.withResolvers<void>();
  #printed = 0;

  constructor(
    readonly what: string,
    readonly label?: string, // before each printed line; none: silent
    readonly maxLines = Infinity, // more are counted, not printed
  ) {}

  protected add(line: string) {
    if (this.lines.length < 10_000) this.lines.push(line);
    if (this.label !== undefined && this.#printed++ < this.maxLines) {
      console.log(this.label + line);
    }
    this.#wake();
  }

  protected end() {
    const hidden = this.#printed - this.maxLines;
    if (hidden > 0) console.log(dim(`… (${hidden} more lines)`));
    this.ended = true;
    this.#wake();
  }

  #wake() {
    this.#changed.resolve();
    this.#changed = Promise.withResolvers();
  }

  /** The first line equal to `pattern` (or matching it), within WAIT_MS. */
  waitFor(pattern: string | RegExp): Promise<string> {
    const matches = (line: string) =>
      typeof pattern === "string" ? line === pattern : pattern.test(line);
    return this.waitUntil((lines) => lines.find(matches), `${pattern}`);
  }

  /** Waits until `check` finds what it wants in the lines so far. */
  async waitUntil<T>(check: (lines: string[]) => T | undefined, what: string) {
    const deadline = Date.now() + WAIT_MS;
    while (true) {
      const found = check(this.lines);
      if (found !== undefined) return found;
      if (this.ended || Date.now() >= deadline) {
        const last = this.lines.at(-1);
        throw new Error(
          `${this.what} ${this.ended ? "ended" : "went on"} without printing ` +
            `${what}${last ? ` (its last line: ${last})` : ""}`,
        );
      }
      await raceTimeout(this.#changed.promise, deadline - Date.now());
    }
  }
}

/** Cuts a text stream into lines (without their "\n"). */
function splitLines() {
  let rest = "";
  return new TransformStream<string, string>({
    transform(chunk, lines) {
      const parts = (rest + chunk).split("\n");
      rest = parts.pop()!;
      for (const part of parts) lines.enqueue(part.replace(/\r$/, ""));
    },
    flush(lines) {
      if (rest) lines.enqueue(rest);
    },
  });
}

/** One process: its stdout and stderr as lines, as a terminal shows them. */
class Program extends Watched {
  readonly child: Deno.ChildProcess;
  readonly #input?: WritableStreamDefaultWriter<Uint8Array>;
  readonly #done: Promise<number>; // its exit code, once its output is read
  #stopped?: Promise<void>;

  constructor(
    command: string[], // [program, ...args]
    options: {
      label?: string;
      maxLines?: number;
      input?: boolean;
      cwd?: string;
    } = {},
  ) {
    if (interrupted) throw new Error("interrupted");
    const script = command.find((arg) => arg.endsWith(".ts"));
    super(
      script ? basename(script) : command[0],
      options.label,
      options.maxLines,
    );
    this.child = new Deno.Command(command[0], {
      args: command.slice(1),
      cwd: options.cwd ?? root,
      stdin: options.input ? "piped" : "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    running.add(this);
    if (options.input) this.#input = this.child.stdin.getWriter();
    const read = async (stream: ReadableStream<Uint8Array>) => {
      const lines = stream.pipeThrough(new TextDecoderStream());
      for await (const line of lines.pipeThrough(splitLines())) this.add(line);
    };
    this.#done = Promise.all([read(this.child.stdout), read(this.child.stderr)])
      .then(() => this.child.status)
      .then(({ code }) => {
        this.end();
        return code;
      });
  }

  /** Types a line into it, showing it as `A> line`. */
  async type(text: string) {
    console.log(`${this.label!.replace("| ", "> ")}${text}`);
    await this.#input!.write(new TextEncoder().encode(`${text}\n`));
  }

  /** Ends its input, as Ctrl-D at a terminal does. */
  async endInput() {
    await this.#input?.close().catch(() => {});
  }

  /** Its exit code, once it exits by itself within WAIT_MS; else stops it. */
  async exitCode(): Promise<number> {
    const code = await raceTimeout(this.#done, WAIT_MS);
    await this.stop();
    if (code === TIMED_OUT) {
      throw new Error(`${this.what} did not exit within ${WAIT_MS} ms`);
    }
    return code;
  }

  /** SIGTERM to its PID (SIGKILL if still there 5 s later); waits for it. */
  stop(): Promise<void> {
    return this.#stopped ??= (async () => {
      await this.endInput();
      const signal = (name: Deno.Signal) => {
        try {
          if (!this.ended) this.child.kill(name);
        } catch { /* it has just exited */ }
      };
      signal("SIGTERM");
      if (await raceTimeout(this.#done, 5000) === TIMED_OUT) signal("SIGKILL");
      await this.#done;
      running.delete(this);
    })();
  }

  [Symbol.asyncDispose]() {
    return this.stop();
  }
}

/** `deno` in a command is this deno, wherever it is installed. */
const spawnable = (command: string[]) =>
  command[0] === "deno" ? [deno, ...command.slice(1)] : command;

/** Starts a server as its header says; resolves on its Listening line(s). */
async function startServer(command: string[], listeningLines = 1) {
  show(command);
  const server = new Program(spawnable(command));
  let listening: string[];
  try {
    listening = await server.waitUntil((lines) => {
      const found = lines.filter((line) => line.startsWith("Listening on "));
      return found.length >= listeningLines ? found : undefined;
    }, `${listeningLines} Listening line(s)`);
  } catch (error) {
    await server.stop();
    throw error;
  }
  listening.forEach((line) => console.log(line));
  const url = (i = 0) => new URL(listening[i].slice("Listening on ".length));
  return Object.assign(server, { port: url().port, url });
}

/**
 * Runs a command to its end, printing at most `maxLines` of its output; its
 * exit status must be the one the lesson expects (some lessons are failures).
 */
async function runToEnd(command: string[], maxLines = 12, failing = false) {
  show(command);
  const program = new Program(spawnable(command), { label: "", maxLines });
  const code = await program.exitCode();
  if (code !== 0) console.log(dim(`(exit ${code})`));
  if ((code !== 0) !== failing) {
    throw new Error(`${program.what} exited ${code}: not the lesson`);
  }
  return program;
}

// The tour's commands are written as they are shown: run`deno run …`.
type Tag<T> = (text: TemplateStringsArray, ...values: unknown[]) => T;
const server: Tag<ReturnType<typeof startServer>> = (text, ...values) =>
  startServer(argv(text, ...values));
const run: Tag<Promise<Program>> = (text, ...values) =>
  runToEnd(argv(text, ...values));
const fails: Tag<Promise<Program>> = (text, ...values) =>
  runToEnd(argv(text, ...values), 12, true);
const runUpTo =
  (maxLines: number): Tag<Promise<Program>> => (text, ...values) =>
    runToEnd(argv(text, ...values), maxLines);

/** A client that stays, in terminal `label`: typed into, its lines labelled. */
function startMember(label: string, command: string[]) {
  show(command, `   (terminal ${label})`);
  return new Program(spawnable(command), { label: `${label}| `, input: true });
}

/** A browser's side of the chat: a WebSocket whose text messages are lines. */
class WebMember extends Watched {
  readonly #socket: WebSocket;
  readonly #closed = Promise.withResolvers<void>();

  private constructor(url: string, label: string) {
    super("the WebSocket", `${label}| `);
    this.#socket = new WebSocket(url);
    this.#socket.onmessage = ({ data }) =>
      this.add(typeof data === "string" ? data : "(a binary message)");
    this.#socket.onclose = () => {
      this.end();
      this.#closed.resolve();
    };
    running.add(this);
  }

  static async open(url: string, label: string): Promise<WebMember> {
    const member = new WebMember(url, label);
    const opened = new Promise<boolean>((resolve) => {
      member.#socket.onopen = () => resolve(true);
      member.#socket.onerror = () => resolve(false);
    });
    if (await raceTimeout(opened, WAIT_MS) !== true) {
      await member.stop();
      throw new Error(`${url}: not open within ${WAIT_MS} ms`);
    }
    return member;
  }

  type(text: string) {
    console.log(`${this.label!.replace("| ", "> ")}${text}`);
    this.#socket.send(text);
  }

  async stop() {
    this.#socket.close();
    await raceTimeout(this.#closed.promise, 5000);
    running.delete(this);
  }

  [Symbol.asyncDispose]() {
    return this.stop();
  }
}

function has(script: string): boolean {
  try {
    return Deno.statSync(join(root, "scripts", script)).isFile;
  } catch {
    return false;
  }
}

/** Whether a tool is installed: tried, not looked up (so Windows too). */
async function installed(tool: string, ...args: string[]) {
  const command = new Deno.Command(tool, {
    args,
    stdout: "null",
    stderr: "null",
  });
  return await command.output().then(() => true, () => false);
}

/** A loopback port nothing uses right now (TCP, or UDP). */
function freePort(udp = false): number {
  const socket = udp
    ? Deno.listenDatagram({ transport: "udp", hostname: "127.0.0.1", port: 0 })
    : Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = socket.addr as Deno.NetAddr;
  socket.close();
  return port;
}

/** A new folder here with a name short enough to read: demo-XXXXXX. */
async function makeScratch(): Promise<string> {
  for (let attempt = 1;; attempt++) {
    const bytes = crypto.getRandomValues(new Uint8Array(3));
    const name = `demo-${
      Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("")
    }`;
    try {
      await Deno.mkdir(join(root, name), { mode: 0o700 });
      return name;
    } catch (error) {
      if (!(error instanceof Deno.errors.AlreadyExists) || attempt === 5) {
        throw error;
      }
    }
  }
}

let failures = 0;

/** One lesson: a heading, then its steps; a failure is shown, the tour goes on. */
async function section(
  title: string,
  scripts: string[],
  steps: () => Promise<void>,
) {
  if (!scripts.every(has)) return;
  console.log(`\n${bold(`== ${title} ==`)}`);
  try {
    await steps();
  } catch (error) {
    if (interrupted) return;
    failures++;
    console.log(
      `! this part failed: ${error instanceof Error ? error.message : error}`,
    );
  }
}

const subheading = (title: string) => console.log(`\n${bold(`-- ${title}`)}`);
const note = (text: string) => console.log(dim(`(${text})`));

// ---------------------------------------------------------------- the tour

const started = performance.now();
const scratch = await makeScratch(); // relative: the commands run in root
const removeScratch = () =>
  Deno.remove(join(root, scratch), { recursive: true }).catch(() => {});

// Ctrl-C reaches the servers too (one process group), but a signal sent to
// the demo alone must not leave them running, nor the scratch folder behind.
const signals: Deno.Signal[] = Deno.build.os === "windows"
  ? ["SIGINT"]
  : ["SIGINT", "SIGTERM"];
const stopEverything = async (signal: Deno.Signal) => {
  if (interrupted) return;
  interrupted = true;
  console.log("\nInterrupted: stopping what the tour started.");
  await Promise.all([...running].map((thing) => thing.stop()));
  await removeScratch();
  Deno.exit(signal === "SIGINT" ? 130 : 143); // 128 + the signal's number
};
const handlers = signals.map((signal) =>
  [signal, () => stopEverything(signal)] as const
);
handlers.forEach(([signal, handler]) =>
  Deno.addSignalListener(signal, handler)
);

try {
  await section(
    "Echo: every byte back, any size, many clients at once",
    ["echo_server.ts", "echo_client.ts"],
    async () => {
      await using echo =
        await server`deno run --allow-net scripts/echo_server.ts --port 0`;
      const port = echo.port;
      await run`deno run --allow-net scripts/echo_client.ts --port ${port} hello world`;
      await run`deno run --allow-net scripts/echo_client.ts --port ${port} --count 3`;

      if (has("timeout_client.ts")) {
        subheading("Timeout client: the connect and the reply each bounded");
        await run`deno run --allow-net scripts/timeout_client.ts --port ${port} ${"are you there?"}`;
        // A server that accepts and then says nothing, like a hung service.
        const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
        const accepted = silent.accept().catch(() => undefined);
        const hung = silent.addr.port;
        note(`port ${hung}: a server that accepts and never answers`);
        try {
          await fails`deno run --allow-net scripts/timeout_client.ts --port ${hung} --timeout 0.5 hello?`;
        } finally {
          silent.close();
          (await accepted)?.close();
        }
      }

      if (has("multi_connect.ts")) {
        subheading("Multi-connect: several servers at once, one line each");
        const closed = freePort();
        await fails`deno run --allow-net scripts/multi_connect.ts 127.0.0.1:${port} 127.0.0.1:${closed} --send ping`;
      }
    },
  );

  await section(
    "UDP timestamp: every datagram answered, even an empty one",
    ["udp_server.ts", "udp_client.ts"],
    async () => {
      await using udp =
        await server`deno run --unstable-net --allow-net scripts/udp_server.ts --port 0`;
      await run`deno run --unstable-net --allow-net scripts/udp_client.ts --port ${udp.port} hello over udp`;
    },
  );

  await section(
    "Upload: framed, verified, atomic",
    ["upload_server.ts", "upload_client.ts"],
    async () => {
      const [dir, file] = [`${scratch}/uploads`, `${scratch}/notes.txt`];
      await Deno.writeTextFile(join(root, file), "Uploaded.\n".repeat(2000));
      await using upload =
        await server`deno run --allow-net --allow-read=${dir} --allow-write=${dir} scripts/upload_server.ts --port 0 --dir ${dir}`;
      await run`deno run --allow-net --allow-read=${file} scripts/upload_client.ts --port ${upload.port} ${file}`;
      note("the same file again: the server keeps the first one");
      await fails`deno run --allow-net --allow-read=${file} scripts/upload_client.ts --port ${upload.port} ${file}`;
    },
  );

  // Which chat_server.ts this is: the browser and Redis parts came later.
  const chatHelp = !has("chat_server.ts") ? "" : new TextDecoder().decode(
    (await new Deno.Command(deno, {
      args: argv`run --allow-net scripts/chat_server.ts --help`,
      cwd: root,
      stdout: "piped",
      stderr: "null",
    }).output()).stdout,
  );

  await section(
    "Chat: two terminals, one room",
    ["chat_server.ts", "chat_client.ts"],
    async () => {
      await using chat =
        await server`deno run --allow-net scripts/chat_server.ts --port 0`;
      const client =
        argv`deno run --allow-net scripts/chat_client.ts --port ${chat.port}`;
      await using a = startMember("A", client);
      await a.waitFor(/^\* welcome /);
      await using b = startMember("B", client);
      await Promise.all([b.waitFor(/^\* welcome /), a.waitFor(/ joined$/)]);
      await a.type("/nick alice");
      await Promise.all([a, b].map((m) => m.waitFor(/ is now alice$/)));
      await b.type("/nick bob");
      await Promise.all([a, b].map((m) => m.waitFor(/ is now bob$/)));
      await a.type("hello, bob"); // not sent back to alice: she typed it
      await b.waitFor("alice: hello, bob");
      await b.type("/who");
      await b.waitFor(/ here: /);
      if (chatHelp.includes("/msg")) {
        await b.type("/msg alice just between us");
        await a.waitFor("bob (private): just between us");
      } else {
        note("/msg NAME text, a private line: not in this chat_server.ts yet");
      }
      await a.endInput(); // Ctrl-D: alice leaves, and her client exits 0
      if (await a.exitCode() !== 0) throw new Error("chat_client.ts failed");
      await b.waitFor("* alice left");
    },
  );

  await section(
    "Chat in the browser: a WebSocket member and a terminal member",
    ["chat_server.ts", "chat_client.ts"],
    async () => {
      if (!chatHelp.includes("--web-port")) {
        return console.log("(skipped: this chat_server.ts has no --web-port)");
      }
      await using chat = await startServer(
        argv`deno run --allow-net scripts/chat_server.ts --port 0 --web-port 0`,
        2,
      );
      const ws = `ws://${chat.url(1).host}/ws`;
      note(`the demo opens ${ws}, as the page at ${chat.url(1)} does`);
      await using web = await WebMember.open(ws, "web");
      await web.waitFor(/^\* welcome /);
      const client =
        argv`deno run --allow-net scripts/chat_client.ts --port ${chat.port}`;
      await using t = startMember("T", client);
      await Promise.all([t.waitFor(/^\* welcome /), web.waitFor(/ joined$/)]);
      web.type("/nick ada");
      await Promise.all([web, t].map((m) => m.waitFor(/ is now ada$/)));
      web.type("hello from the browser");
      await t.waitFor("ada: hello from the browser");
      await t.type("hello, ada");
      await web.waitFor(/^guest\d+: hello, ada$/);
    },
  );

  await section(
    "Chat across processes: two servers, one room, through Redis",
    ["chat_server.ts", "chat_client.ts"],
    async () => {
      if (!chatHelp.includes("--redis")) {
        return console.log("(skipped: this chat_server.ts has no --redis)");
      }
      if (!(await installed("redis-server", "--version"))) {
        return console.log("(skipped: redis-server is not installed)");
      }
      // A Redis of its own on a free loopback port, saving nothing, run in
      // the scratch folder; "Ready to accept connections" is its Listening.
      const port = freePort();
      const command =
        argv`redis-server --port ${port} --bind 127.0.0.1 --save ${""} --appendonly no`;
      show(command);
      await using redis = new Program(command, { cwd: join(root, scratch) });
      await redis.waitFor(/Ready to accept connections/);
      const url = `redis://127.0.0.1:${port}`;
      await using one =
        await server`deno run --allow-net scripts/chat_server.ts --port 0 --redis ${url}`;
      await using two =
        await server`deno run --allow-net scripts/chat_server.ts --port 0 --redis ${url}`;
      const client = argv`deno run --allow-net scripts/chat_client.ts`;
      await using a = startMember("A", [...client, "--port", one.port]);
      await a.waitFor(/^\* welcome /);
      await using b = startMember("B", [...client, "--port", two.port]);
      await Promise.all([b.waitFor(/^\* welcome /), a.waitFor(/ joined$/)]);
      await a.type("/nick alice");
      await b.waitFor(/ is now alice$/);
      await a.type("hello from the first server");
      await b.waitFor("alice: hello from the first server");
      await b.type("/who");
      await b.waitFor(/ here: /);
    },
  );

  await section(
    "HTTP over a bare socket, both ends (-v shows the request of 001 §3)",
    ["http_raw_server.ts", "http_client.ts"],
    async () => {
      await using raw =
        await server`deno run --allow-net scripts/http_raw_server.ts --port 0`;
      await runUpTo(
        16,
      )`deno run --allow-net scripts/http_client.ts -v ${raw.url()}`;
      await fails`deno run --allow-net scripts/http_client.ts ${raw.url()}missing`;
    },
  );

  await section(
    "HTTP with Deno.serve: the tutorial's Flask app, a form, its links",
    ["http_server.ts", "http_client.ts"],
    async () => {
      await using web =
        await server`deno run --allow-net scripts/http_server.ts --port 0`;
      const form = "username=<alice>"; // shown back escaped, never as markup
      await runUpTo(
        15,
      )`deno run --allow-net scripts/http_client.ts --data ${form} ${web.url()}register`;
      await run`deno run --allow-net scripts/http_client.ts --links ${web.url()}`;
    },
  );

  await section(
    "TCP proxy: bytes both ways, half-close carried through",
    ["tcp_proxy.ts", "echo_server.ts", "echo_client.ts"],
    async () => {
      await using echo =
        await server`deno run --allow-net scripts/echo_server.ts --port 0`;
      await using proxy =
        await server`deno run --allow-net scripts/tcp_proxy.ts --port 0 --target 127.0.0.1:${echo.port}`;
      await run`deno run --allow-net scripts/echo_client.ts --port ${proxy.port} through the proxy`;
    },
  );

  // One throwaway CA and leaf for TLS and QUIC, made as `deno task cert` does.
  const certs = `${scratch}/certs`;
  const [ca, cert, key] = [
    `${certs}/ca.pem`,
    `${certs}/localhost.pem`,
    `${certs}/localhost.key`,
  ];
  const canMakeCertificates = has("make_cert.ts") &&
    await installed("openssl", "version");

  await section(
    "TLS: the same echo, encrypted, with a throwaway certificate",
    ["make_cert.ts", "echo_server.ts", "echo_client.ts"],
    async () => {
      if (!canMakeCertificates) {
        return console.log("(skipped: openssl is not installed)");
      }
      show(
        argv`deno run --allow-run=openssl --allow-read=${scratch} --allow-write=${scratch} scripts/make_cert.ts ${certs}`,
        "   (the demo calls its makeCertificates())",
      );
      await makeCertificates({ dir: join(root, certs) });
      console.log(
        `Made ${ca} (a CA) and ${cert} (for localhost, 127.0.0.1 and ::1, signed by the CA)`,
      );
      await using echo =
        await server`deno run --allow-net --allow-read=${certs} scripts/echo_server.ts --port 0 --cert ${cert} --key ${key}`;
      await run`deno run --allow-net --allow-read=${ca} scripts/echo_client.ts --port ${echo.port} --cacert ${ca} hello over tls`;
      note("without --cacert the client trusts only the system's CAs:");
      await fails`deno run --allow-net scripts/echo_client.ts --port ${echo.port} --tls hello`;

      if (has("http_server.ts") && has("http_client.ts")) {
        subheading("HTTPS with the same certificate (and HTTP/2, by ALPN)");
        await using web =
          await server`deno run --allow-net --allow-read=${certs} scripts/http_server.ts --port 0 --cert ${cert} --key ${key}`;
        await run`deno run --allow-net --allow-read=${ca} scripts/http_client.ts -I --cacert ${ca} ${web.url()}`;
        if (await installed("curl", "--version")) {
          const curl = await runUpTo(
            4,
          )`curl -sS -i --noproxy * --cacert ${ca} ${web.url()}`;
          if (curl.lines[0]?.startsWith("HTTP/2 ")) {
            note("curl asked for HTTP/2 by ALPN, and the server agreed");
          }
        }
      }
    },
  );

  await section(
    "QUIC: echo over UDP, TLS 1.3 built in, a stream per message",
    ["quic_server.ts", "quic_client.ts"],
    async () => {
      if (!canMakeCertificates) {
        return console.log("(skipped: openssl is not installed)");
      }
      await using quic =
        await server`deno run --unstable-net --allow-net --allow-read=${certs} scripts/quic_server.ts --port 0 --cert ${cert} --key ${key}`;
      await run`deno run --unstable-net --allow-net --allow-read=${ca} scripts/quic_client.ts --port ${quic.port} --cacert ${ca} hello over quic`;
      await run`deno run --unstable-net --allow-net --allow-read=${ca} scripts/quic_client.ts --port ${quic.port} --cacert ${ca} --count 3`;
    },
  );

  await section(
    "DNS: a zone file served by hand, looked up with Deno.resolveDns",
    ["dns_server.ts", "dns_lookup.ts"],
    async () => {
      const zone = "scripts/dns_example.zone";
      await using dns =
        await server`deno run --unstable-net --allow-net --allow-read=${zone} scripts/dns_server.ts --zone ${zone} --port 0`;
      const at = `127.0.0.1:${dns.port}`;
      await run`deno run --unstable-net --allow-net scripts/dns_lookup.ts www.example.test --server ${at}`;
      await run`deno run --unstable-net --allow-net scripts/dns_lookup.ts example.test --type MX --server ${at}`;
      await fails`deno run --unstable-net --allow-net scripts/dns_lookup.ts nowhere.example.test --server ${at}`;
      if (await installed("dig", "-v")) {
        await run`dig @127.0.0.1 -p ${dns.port} alias.example.test +noall +answer +tries=1`;
      }
    },
  );

  await section(
    "Discovery: two peers find each other by loopback multicast",
    ["udp_discovery.ts"],
    async () => {
      // A port of its own, so that no other copy on this machine joins in.
      const port = freePort(true);
      const peer =
        argv`deno run --unstable-net --allow-net scripts/udp_discovery.ts --interface 127.0.0.1 --interval 0.2 --port ${port}`;
      await using a = startMember("A", [...peer, "alice"]);
      await using b = startMember("B", [...peer, "bob"]);
      await Promise.all([
        a.waitFor("+ bob 127.0.0.1"),
        b.waitFor("+ alice 127.0.0.1"),
      ]);
      note(
        "bob is stopped with SIGTERM: he says BYE, and alice notices at once",
      );
      await b.stop();
      await a.waitFor("- bob");
    },
  );

  await section(
    "RPC: JSON-RPC 2.0, one JSON text per line, calls that overlap",
    ["rpc_server.ts", "rpc_client.ts"],
    async () => {
      await using rpc =
        await server`deno run --allow-net scripts/rpc_server.ts --port 0`;
      await run`deno run --allow-net scripts/rpc_client.ts --port ${rpc.port} add 2 3`;
      note(
        `two calls on one connection, as typed into nc 127.0.0.1 ${rpc.port}`,
      );
      await overlappingCalls(Number(rpc.port));
    },
  );
} finally {
  handlers.forEach(([signal, handler]) =>
    Deno.removeSignalListener(signal, handler)
  );
  await removeScratch();
}

/**
 * A slow `sleep` sent before a quick `add` on one connection: the server
 * runs both at once, so the add's answer comes first, with its id.
 */
async function overlappingCalls(port: number) {
  const calls = [
    { jsonrpc: "2.0", method: "sleep", params: [1000], id: 1 },
    { jsonrpc: "2.0", method: "add", params: [2, 3], id: 2 },
  ].map((call) => JSON.stringify(call));
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  const answers = conn.readable.pipeThrough(new TextDecoderStream())
    .pipeThrough(splitLines()).getReader();
  const timer = setTimeout(() => answers.cancel(), WAIT_MS);
  try {
    calls.forEach((call) => console.log(`> ${call}`));
    await conn.write(
      new TextEncoder().encode(calls.map((c) => `${c}\n`).join("")),
    );
    for (const _ of calls) {
      const { value, done } = await answers.read();
      if (done) throw new Error("the server closed before answering both");
      console.log(`< ${value}`);
    }
  } finally {
    clearTimeout(timer);
    await answers.cancel();
    try {
      conn.close();
    } catch { /* closed with its stream */ }
  }
}

const seconds = ((performance.now() - started) / 1000).toFixed(1);
console.log(
  `\nTour finished in ${seconds} s; every server was started on a free ` +
    "port and stopped with SIGTERM.",
);
if (failures > 0) {
  console.log(`${failures} part(s) failed: see the lines starting with "!".`);
  Deno.exit(1);
}
