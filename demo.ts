/**
 * A guided tour: starts each server on a free port exactly as its header
 * says, runs its client against it, and prints what you would see in a
 * terminal. Takes a few seconds; leaves nothing running or behind.
 *
 * Run:    deno task demo
 *    or:  deno run --allow-net --allow-run --allow-read --allow-write demo.ts
 */
const root = new URL(".", import.meta.url).pathname;
// Grey commands and bold headings on a terminal; plain text in a pipe or file.
const color = Deno.stdout.isTerminal() && !Deno.env.get("NO_COLOR");
const dim = (text: string) => color ? `\x1b[2m${text}\x1b[0m` : text;
const bold = (text: string) => color ? `\x1b[1m${text}\x1b[0m` : text;
const deno = Deno.execPath();

interface Server {
  port: number;
  child: Deno.ChildProcess;
  stop(): Promise<void>;
}

function exists(script: string): boolean {
  try {
    Deno.statSync(`${root}scripts/${script}`);
    return true;
  } catch {
    return false;
  }
}

function show(command: string[]) {
  console.log(dim(`$ deno run ${command.join(" ")}`));
}

/** Starts a server script and waits for its "Listening on" line. */
async function startServer(
  permissions: string[],
  script: string,
  args: string[],
): Promise<Server> {
  const command = [...permissions, `scripts/${script}`, ...args];
  show(command);
  const child = new Deno.Command(deno, {
    args: ["run", ...command],
    cwd: root,
    stdin: "null",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`${script} exited before listening`);
    text += value;
  }
  const line = text.split("\n")[0];
  console.log(line);
  const draining = (async () => {
    while (!(await reader.read()).done) { /* ignore the rest */ }
  })();
  return {
    port: Number(line.match(/:(\d+)$/)![1]),
    child,
    async stop() {
      child.kill("SIGTERM");
      await child.status;
      await draining;
    },
  };
}

/** Runs a client script to the end and prints its output, as a terminal would. */
async function runClient(
  permissions: string[],
  script: string,
  args: string[],
  input?: string,
) {
  const command = [...permissions, `scripts/${script}`, ...args];
  show(
    input === undefined
      ? command
      : [...command, `<<< ${JSON.stringify(input)}`],
  );
  const child = new Deno.Command(deno, {
    args: ["run", ...command],
    cwd: root,
    stdin: input === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (input !== undefined) {
    const writer = child.stdin.getWriter();
    await writer.write(new TextEncoder().encode(input));
    await writer.close();
  }
  const { code, stdout, stderr } = await child.output();
  const text = new TextDecoder().decode(stdout) +
    new TextDecoder().decode(stderr);
  if (text) console.log(text.trimEnd());
  if (code !== 0) console.log(dim(`(exit ${code})`));
}

function heading(title: string) {
  console.log(bold(`\n== ${title} ==`));
}

const NET = ["--allow-net"];
const started = performance.now();
const temporary = await Deno.makeTempDir({ prefix: "demo-" });
try {
  if (exists("echo_server.ts")) {
    heading("Echo: every byte back, any size, many clients at once");
    const echo = await startServer(NET, "echo_server.ts", ["--port", "0"]);
    await runClient(NET, "echo_client.ts", [
      "--port",
      `${echo.port}`,
      "hello",
      "world",
    ]);
    await runClient(NET, "echo_client.ts", [
      "--port",
      `${echo.port}`,
      "--count",
      "3",
    ]);

    if (exists("timeout_client.ts")) {
      heading("Timeout client: connect and reply each bounded");
      await runClient(NET, "timeout_client.ts", [
        "--port",
        `${echo.port}`,
        "are you there?",
      ]);
      // A server that accepts and then says nothing, like a hung service.
      const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const accepted: Deno.Conn[] = [];
      const accepting = (async () => {
        for await (const conn of silent) accepted.push(conn);
      })();
      console.log(
        dim(`(a server on port ${silent.addr.port} accepts, never answers)`),
      );
      await runClient(NET, "timeout_client.ts", [
        "--port",
        `${silent.addr.port}`,
        "--timeout",
        "0.5",
        "hello?",
      ]);
      silent.close();
      await accepting.catch(() => {});
      accepted.forEach((conn) => conn.close());
    }

    if (exists("tcp_proxy.ts")) {
      heading("TCP proxy: bytes both ways, half-close carried through");
      const proxy = await startServer(NET, "tcp_proxy.ts", [
        "--port",
        "0",
        "--target",
        `127.0.0.1:${echo.port}`,
      ]);
      await runClient(NET, "echo_client.ts", [
        "--port",
        `${proxy.port}`,
        "through",
        "the",
        "proxy",
      ]);
      await proxy.stop();
    }

    if (exists("multi_connect.ts")) {
      heading("Multi-connect: several servers at once, one line each");
      const closed = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      const closedPort = closed.addr.port;
      closed.close();
      await runClient(NET, "multi_connect.ts", [
        `127.0.0.1:${echo.port}`,
        `127.0.0.1:${closedPort}`,
        "--send",
        "ping",
      ]);
    }
    await echo.stop();
  }

  if (exists("chat_server.ts")) {
    heading("Chat: a room for nc, telnet or chat_client.ts");
    const chat = await startServer(NET, "chat_server.ts", ["--port", "0"]);
    await runClient(
      NET,
      "chat_client.ts",
      ["--port", `${chat.port}`],
      "/nick alice\n/who\nhello, room\n",
    );
    await chat.stop();
  }

  if (exists("udp_server.ts")) {
    heading("UDP timestamp: every datagram answered, even an empty one");
    const udp = await startServer(NET, "udp_server.ts", ["--port", "0"]);
    await runClient(NET, "udp_client.ts", [
      "--port",
      `${udp.port}`,
      "hello",
      "over",
      "udp",
    ]);
    await udp.stop();
  }

  if (exists("upload_server.ts")) {
    heading("Upload: framed, verified, atomic");
    const dir = `${temporary}/uploads`;
    const file = `${temporary}/notes.txt`;
    await Deno.writeTextFile(file, "Uploaded by the demo.\n".repeat(1000));
    const upload = await startServer(
      [...NET, `--allow-read=${dir}`, `--allow-write=${dir}`],
      "upload_server.ts",
      ["--port", "0", "--dir", dir],
    );
    await runClient([...NET, `--allow-read=${file}`], "upload_client.ts", [
      "--port",
      `${upload.port}`,
      file,
    ]);
    await runClient([...NET, `--allow-read=${file}`], "upload_client.ts", [
      "--port",
      `${upload.port}`,
      file,
    ]);
    await upload.stop();
  }

  if (exists("http_raw_server.ts") && exists("http_client.ts")) {
    heading("HTTP over a bare socket, both ends");
    const raw = await startServer(NET, "http_raw_server.ts", ["--port", "0"]);
    await runClient(NET, "http_client.ts", [
      "-i",
      `http://127.0.0.1:${raw.port}/`,
    ]);
    await runClient(NET, "http_client.ts", [
      `http://127.0.0.1:${raw.port}/missing`,
    ]);
    await raw.stop();
  }

  if (exists("http_server.ts") && exists("http_client.ts")) {
    heading("HTTP with Deno.serve: the tutorial's Flask app");
    const dir = `${temporary}/http-uploads`;
    const web = await startServer(
      [...NET, `--allow-read=${dir}`, `--allow-write=${dir}`],
      "http_server.ts",
      ["--port", "0", "--dir", dir],
    );
    await runClient(NET, "http_client.ts", [
      "--data",
      "username=<alice>",
      `http://127.0.0.1:${web.port}/register`,
    ]);
    await runClient(NET, "http_client.ts", [
      "--links",
      `http://127.0.0.1:${web.port}/`,
    ]);
    await web.stop();
  }
} finally {
  await Deno.remove(temporary, { recursive: true });
}
console.log(
  `\nTour finished in ${
    ((performance.now() - started) / 1000).toFixed(1)
  } s; ` +
    "every server was started on a free port and stopped with SIGTERM.",
);
