// The machinery under bench.ts: where servers and load run (CPU pinning),
// starting a server and waiting for it to listen, stopping it by its PID,
// reading its CPU time and memory from /proc, and running the load client.
import { raceTimeout, TIMED_OUT } from "../lib/deadline.ts";

/** The repository root and bench/ as file paths. */
export const ROOT = new URL("..", import.meta.url).pathname;
export const BENCH = new URL(".", import.meta.url).pathname;

/** How one server under test is started. */
export interface ServerSpec {
  /** Short name for --servers and the table. */
  id: string;
  /** What the table calls it. */
  label: string;
  /** One of our scripts (the row gets a target). */
  ours?: boolean;
  /** Our script, relative to the repository root: skipped while missing. */
  script?: string;
  /** Outside tools it needs (node, python3, ncat…): skipped when missing. */
  tools?: string[];
  /**
   * argv; `port` is 0 unless the server prints no Listening line, `dir` is
   * a fresh directory for this run, `scratch` the suite's directory.
   */
  command(context: { port: number; dir: string; scratch: string }): string[];
  /** It prints no Listening line: we pick a port and watch /proc/net. */
  silent?: boolean;
  /** Which baseline (id) its figures are divided by, and the target. */
  vs?: string;
  target?: number;
  /** Upload baseline: no UPLOAD header, the stream ends the file (nc). */
  rawUpload?: boolean;
  /** A shell pipeline: its PID is the shell's, so no memory figure. */
  pipeline?: boolean;
  /**
   * How many `Listening on` lines it prints (default 1); the load goes to
   * the port of the last one (chat_server.ts --web-port: TCP, then HTTP).
   */
  listenLines?: number;
  /** Copies started side by side (default 1): the load spreads over them. */
  instances?: number;
  /** Skipped by --quick (false): only in full runs. */
  quick?: boolean;
  /** Extra options for the load client against this server. */
  loadOptions?: Record<string, string | number | boolean>;
}

/** One measured run. */
export interface Sample {
  /** The metric's figure (higher is better). */
  value: number;
  /** Load client CPU time ÷ wall time (1 = one CPU saturated). */
  loadCpu?: number;
  /** Server CPU time ÷ wall time during the run. */
  serverCpu?: number;
  /** Secondary figures (p99 latency, peak RSS…). */
  extra?: Record<string, number>;
}

export interface Settings {
  quick: boolean;
  rounds: number;
  seconds: number;
  warmup: number;
  uploadBytes: number;
  /** Lines the chat burst sends. */
  chatLines: number;
  /** Lines per second the paced chat talker sends. */
  pacedRate: number;
  forceJsLoad: boolean;
  pin: boolean;
}

export interface Environment extends Settings {
  /** Prefix that runs a server on its CPU (taskset), or nothing. */
  serverPrefix: string[];
  /** Prefix that runs a load client on its CPU, or nothing. */
  loadPrefix: string[];
  /** argv of the load client (compiled loadgen or bench/load.ts). */
  loadClient: string[];
  /** The same for TLS runs (bench/load.ts when cc had no OpenSSL). */
  tlsLoadClient: string[];
  /** Scratch directory (the system's temporary directory). */
  scratch: string;
  describe(): string;
  cleanUp(): Promise<void>;
}

/** Works out pinning and the load client, and compiles loadgen.c. */
export async function prepareEnvironment(
  settings: Settings,
): Promise<Environment> {
  // Not /dev/shm: Deno 2.9 wants --allow-all for anything under /dev, and
  // the upload server runs with the narrow permissions its header gives.
  const scratch = await Deno.makeTempDir({ prefix: "deno-bench-" });
  const cpus = await allowedCpus();
  const pinned = settings.pin && cpus.length >= 2 &&
    await hasCommand("taskset");
  const serverPrefix = pinned ? ["taskset", "-c", String(cpus[0])] : [];
  const loadPrefix = pinned ? ["taskset", "-c", String(cpus[1])] : [];

  const jsLoad = [
    Deno.execPath(),
    "run",
    "--allow-net",
    "--allow-read",
    `${BENCH}load.ts`,
  ];
  let loadClient = jsLoad;
  let tlsLoadClient = jsLoad;
  let loadDescription = "bench/load.ts (JS)";
  if (!settings.forceJsLoad && await hasCommand("cc")) {
    const binary = `${scratch}/loadgen`;
    const compile = (args: string[]) =>
      new Deno.Command("cc", {
        args: ["-O2", "-o", binary, `${BENCH}loadgen.c`, ...args],
        stdout: "null",
        stderr: "piped",
      }).output();
    // With OpenSSL when its headers are installed (libssl-dev), else plain.
    let compiled = await compile(["-DWITH_TLS", "-lssl", "-lcrypto"]);
    if (compiled.success) {
      loadClient = tlsLoadClient = [binary];
      loadDescription =
        "bench/loadgen.c (cc -O2, epoll, one thread; TLS with OpenSSL)";
    } else {
      compiled = await compile([]);
      if (compiled.success) {
        loadClient = [binary];
        loadDescription =
          "bench/loadgen.c (cc -O2, epoll, one thread); TLS load from bench/load.ts (JS: no OpenSSL headers)";
      }
    }
    if (!compiled.success) {
      console.error(
        `cc failed, using bench/load.ts: ${
          new TextDecoder().decode(compiled.stderr).split("\n")[0]
        }`,
      );
    }
  }

  const versions = await Promise.all([
    toolVersion("node", ["--version"]),
    toolVersion("python3", ["--version"]),
    toolVersion("wrk", ["--version"]),
  ]);
  const cpuModel = await cpuName();
  const describe = () =>
    [
      `Machine: ${cpuModel}, ${navigator.hardwareConcurrency} CPUs, Linux ${Deno.osRelease()}`,
      `Deno ${Deno.version.deno} (V8 ${Deno.version.v8}); Node ${
        versions[0]
      }; ${versions[1]}; wrk ${
        versions[2].replace(/^wrk\s*/, "").split(" ")[0]
      }`,
      `Date: ${new Date().toISOString().replace(/\.\d+Z$/, "Z")}`,
      `Load: ${loadDescription}; ${
        pinned
          ? `servers pinned to CPU ${cpus[0]}, load to CPU ${cpus[1]} (taskset)`
          : "no CPU pinning"
      }`,
      `Runs: best of ${settings.rounds} per server and metric, ${settings.warmup} s warm-up + ${settings.seconds} s measured; order rotates each round`,
      `Chat: burst of ${
        settings.chatLines.toLocaleString("en-US")
      } lines (WebSocket: a tenth); paced at ${
        settings.pacedRate.toLocaleString("en-US")
      } lines/s for ${settings.seconds * 2} s`,
    ].join("\n");

  return {
    ...settings,
    serverPrefix,
    loadPrefix,
    loadClient,
    tlsLoadClient,
    scratch,
    describe,
    cleanUp: () => Deno.remove(scratch, { recursive: true }).catch(() => {}),
  };
}

/** PIDs of the servers and load clients running now (for Ctrl-C). */
export const liveProcesses = new Set<number>();

/** Stops every server and load client still running (SIGTERM each). */
export function stopAllNow() {
  for (const pid of liveProcesses) {
    try {
      Deno.kill(pid, "SIGTERM");
    } catch {
      // Already gone.
    }
  }
}

export interface RunningServer {
  spec: ServerSpec;
  /** The first instance's PID and load port. */
  pid: number;
  port: number;
  /** Every instance's PID and load port. */
  pids: number[];
  ports: number[];
  /** The scheme of the load port's Listening line (tcp, tls, https…). */
  scheme?: string;
  /** The directory an upload server writes to. */
  dir: string;
  /** Whether the process is still running. */
  alive(): boolean;
  /** SIGTERM, then SIGKILL after a bound; `problem` says what went wrong. */
  stop(): Promise<{ problem?: string }>;
}

const LISTENING = /^Listening on (\w+):\/\/\[?([^\]]*?)\]?:(\d+)\s*$/;

/**
 * Starts a server (all its instances) and resolves once it listens: after
 * its `Listening on` line(s), or (for tools that print none) once /proc/net
 * shows the port.
 */
export async function startServer(
  spec: ServerSpec,
  environment: Environment,
): Promise<RunningServer> {
  const dir = await Deno.makeTempDir({
    dir: environment.scratch,
    prefix: `${spec.id}-`,
  });
  const started: RunningServer[] = [];
  // The directory is every instance's: removed here only, once all stopped.
  let stopping: Promise<{ problem?: string }> | undefined;
  const stop = () =>
    stopping ??= (async () => {
      const outcomes = await Promise.all(started.map((one) => one.stop()));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      return { problem: outcomes.find((outcome) => outcome.problem)?.problem };
    })();
  try {
    for (let instance = 0; instance < (spec.instances ?? 1); instance++) {
      started.push(await startOne(spec, environment, dir));
    }
  } catch (error) {
    await stop();
    throw error;
  }
  return {
    ...started[0],
    pids: started.map((server) => server.pid),
    ports: started.map((server) => server.port),
    alive: () => started.every((server) => server.alive()),
    stop,
  };
}

/** One instance, using `dir`, which is startServer's to remove. */
async function startOne(
  spec: ServerSpec,
  environment: Environment,
  dir: string,
): Promise<RunningServer> {
  const chosenPort = spec.silent ? freePort() : 0;
  const argv = [
    ...environment.serverPrefix,
    ...spec.command({ port: chosenPort, dir, scratch: environment.scratch }),
  ];
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  liveProcesses.add(child.pid);
  let exited = false;
  const status = child.status.then((status) => {
    exited = true;
    liveProcesses.delete(child.pid);
    return status;
  });
  // Keep the last few KiB of output for error messages; never let a pipe
  // fill up and block a chatty server.
  let stderrTail = "";
  const stderrDone = drain(child.stderr, (text) => {
    stderrTail = (stderrTail + text).slice(-4096);
  });
  // The first `listenLines` lines of stdout, once they are all there.
  const wanted = spec.listenLines ?? 1;
  let stdoutText = "";
  let listening: ((lines: string[]) => void) | undefined;
  const firstLines = new Promise<string[]>((resolve) => listening = resolve);
  const stdoutDone = drain(child.stdout, (text) => {
    if (stdoutText.length < 4096) stdoutText += text;
    const lines = stdoutText.split("\n");
    if (lines.length > wanted) listening?.(lines.slice(0, wanted));
  });

  let stopping: Promise<{ problem?: string }> | undefined;
  const stop = () =>
    stopping ??= (async () => {
      let problem: string | undefined;
      if (!exited) {
        try {
          Deno.kill(child.pid, "SIGTERM");
        } catch {
          // It exited just now.
        }
        if (await raceTimeout(status, 3000) === TIMED_OUT) {
          problem = "still running 3 s after SIGTERM; killed";
          try {
            Deno.kill(child.pid, "SIGKILL");
          } catch {
            // Gone after all.
          }
        }
      }
      const final = await status;
      await Promise.all([stderrDone, stdoutDone]);
      if (!problem && spec.ours && final.code !== 0) {
        problem = `exit code ${final.code}${
          final.signal ? ` (${final.signal})` : ""
        }`;
      }
      return { problem };
    })();

  const fail = async (why: string): Promise<never> => {
    await stop();
    throw new Error(
      `${spec.label}: ${why}${
        stderrTail ? `; stderr: ${stderrTail.trim().slice(-500)}` : ""
      }`,
    );
  };

  let port = chosenPort;
  let scheme: string | undefined;
  if (spec.silent) {
    const ready = waitForPort(chosenPort, () => exited);
    if (await raceTimeout(ready, 20_000) === TIMED_OUT) {
      await fail("not listening after 20 s");
    }
    if (exited) await fail("exited before listening");
  } else {
    const exit = status.then(() => "exited" as const);
    const outcome = await raceTimeout(Promise.race([firstLines, exit]), 20_000);
    if (outcome === TIMED_OUT) await fail("no Listening line after 20 s");
    if (outcome === "exited") await fail("exited before listening");
    for (const line of outcome as string[]) {
      const match = LISTENING.exec(line);
      if (!match) await fail(`not a 'Listening on …' line: ${line}`);
      scheme = match![1];
      port = Number(match![3]);
    }
  }
  console.error(`  ${spec.label} started as pid ${child.pid} on port ${port}`);
  return {
    spec,
    pid: child.pid,
    port,
    pids: [child.pid],
    ports: [port],
    scheme,
    dir,
    alive: () => !exited,
    stop,
  };
}

async function drain(
  stream: ReadableStream<Uint8Array>,
  onText: (text: string) => void,
) {
  const decoder = new TextDecoder();
  try {
    for await (const chunk of stream) {
      onText(decoder.decode(chunk, { stream: true }));
    }
  } catch {
    // The process is gone; nothing more to read.
  }
}

/** A port that was free a moment ago (for tools that cannot use port 0). */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return port;
}

/** Resolves once /proc/net/tcp lists a listening socket on `port`. */
async function waitForPort(port: number, gone: () => boolean) {
  const hex = port.toString(16).toUpperCase().padStart(4, "0");
  while (!gone()) {
    for (const table of ["/proc/net/tcp", "/proc/net/tcp6"]) {
      const text = await readProc(table);
      // Columns: sl local_address rem_address st …; st 0A is LISTEN.
      for (const line of text.split("\n").slice(1)) {
        const fields = line.trim().split(/\s+/);
        if (fields[1]?.endsWith(`:${hex}`) && fields[3] === "0A") return;
      }
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/**
 * Reads a /proc file ("" when it is gone). Deno 2.9 wants --allow-all for
 * /proc, which a benchmark should not need, so `cat` reads it for us.
 */
export async function readProc(path: string): Promise<string> {
  const output = await new Deno.Command("cat", {
    args: [path],
    stdout: "piped",
    stderr: "null",
  }).output();
  return output.success ? new TextDecoder().decode(output.stdout) : "";
}

/** CPU seconds of all of a server's processes (undefined if one is gone). */
export async function serverCpuSeconds(
  server: RunningServer,
): Promise<number | undefined> {
  let total = 0;
  for (const pid of server.pids) {
    const seconds = await cpuSeconds(pid);
    if (seconds === undefined) return undefined;
    total += seconds;
  }
  return total;
}

/** User + system CPU seconds of a process (all threads), from /proc. */
export async function cpuSeconds(pid: number): Promise<number | undefined> {
  try {
    const stat = await readProc(`/proc/${pid}/stat`);
    if (!stat) return undefined;
    // Fields after the ")" closing the command name; utime and stime are
    // fields 14 and 15 of the whole line, in clock ticks (100 per second).
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return undefined;
  }
}

/** A memory figure of a process in KiB (VmHWM: peak RSS; VmRSS: now). */
export async function memoryKiB(
  pid: number,
  field: "VmHWM" | "VmRSS",
): Promise<number | undefined> {
  try {
    const status = await readProc(`/proc/${pid}/status`);
    const match = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status);
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** What the load client prints: one JSON line (see loadgen.c's header). */
export interface LoadReport {
  ops: number;
  bytes: number;
  seconds: number;
  cpu: number;
  p50_us: number;
  p99_us: number;
  errors: number;
  reply?: string;
  /** The server's CPU seconds in the window, read by the load client. */
  server_cpu?: number;
  /** paced: lines the talker sent in the window. */
  sent?: number;
}

/**
 * Runs the load client (`mode` plus options) against a server on the load
 * CPU and returns its report with the server's CPU share over the run.
 */
export async function runLoad(
  environment: Environment,
  server: RunningServer,
  mode: string,
  options: Record<string, string | number | boolean>,
): Promise<{ report: LoadReport; serverCpu?: number }> {
  // The C client reads the server's CPU time itself at the window's edges;
  // we sample it too, for load.ts (a short burst makes our sampling coarse).
  const args = [mode, "--port", String(server.port), "--pids"];
  args.push(server.pids.join(","));
  // A server of two instances: every other client goes to the second.
  if (server.ports.length > 1) args.push("--port2", String(server.ports[1]));
  for (
    const [name, value] of Object.entries({
      ...options,
      ...server.spec.loadOptions,
    })
  ) {
    if (value === false) continue;
    args.push(`--${name}`);
    if (value !== true) args.push(String(value));
  }
  // The server's CPU share is taken over the measured window: the load
  // client prints "measuring" when its warm-up ends and its report when the
  // window closes (connecting 100 chat clients can take seconds and must not
  // count). Upload prints no marker: there the whole run is the window.
  let windowStart: Promise<[number, number | undefined]> | undefined;
  let windowEnd: Promise<[number, number | undefined]> | undefined;
  const sample = async (): Promise<[number, number | undefined]> => [
    performance.now(),
    await serverCpuSeconds(server),
  ];
  const processStart = await sample();
  const output = await runBounded(
    [
      ...environment.loadPrefix,
      ...(args.includes("--tls") || args.includes("--cacert")
        ? environment.tlsLoadClient
        : environment.loadClient),
      ...args,
    ],
    (environment.warmup + environment.seconds) * 1000 + 60_000,
    (line) => {
      if (line === "measuring") windowStart ??= sample();
      else if (line.startsWith("{")) windowEnd ??= sample();
    },
  );
  const [startedAt, before] = await (windowStart ?? processStart);
  const [endedAt, after] = await (windowEnd ?? sample());
  const last = output.stdout.trim().split("\n").pop() ?? "";
  if (output.code !== 0 || !last.startsWith("{")) {
    throw new Error(
      `load client failed (exit ${output.code}): ${
        output.stderr.trim().split("\n").slice(-2).join(" ") || last
      }`,
    );
  }
  const report = JSON.parse(last) as LoadReport;
  if (report.server_cpu !== undefined) {
    return { report, serverCpu: report.server_cpu / report.seconds };
  }
  return {
    report,
    serverCpu: before !== undefined && after !== undefined
      ? (after - before) / ((endedAt - startedAt) / 1000)
      : undefined,
  };
}

/**
 * Runs a command to completion, killing it after `limitMs`; `onLine` sees
 * each line of its stdout as it arrives.
 */
export async function runBounded(
  argv: string[],
  limitMs: number,
  onLine?: (line: string) => void,
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(argv[0], {
    args: argv.slice(1),
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  liveProcesses.add(child.pid);
  const timer = setTimeout(() => {
    try {
      Deno.kill(child.pid, "SIGKILL");
    } catch {
      // Already finished.
    }
  }, limitMs);
  try {
    let stdout = "";
    let scanned = 0;
    const [, stderr, status] = await Promise.all([
      drain(child.stdout, (text) => {
        stdout += text;
        let newline;
        while ((newline = stdout.indexOf("\n", scanned)) >= 0) {
          onLine?.(stdout.slice(scanned, newline));
          scanned = newline + 1;
        }
      }),
      new Response(child.stderr).text(),
      child.status,
    ]);
    liveProcesses.delete(child.pid);
    return { code: status.code, stdout, stderr };
  } finally {
    clearTimeout(timer);
  }
}

/** Whether a command-line tool is installed. */
export async function hasCommand(command: string): Promise<boolean> {
  try {
    const { success } = await new Deno.Command("sh", {
      args: ["-c", 'command -v "$1"', "sh", command],
      stdout: "null",
      stderr: "null",
    }).output();
    return success;
  } catch {
    return false;
  }
}

async function toolVersion(tool: string, args: string[]): Promise<string> {
  if (!(await hasCommand(tool))) return `${tool} missing`;
  const output = await runBounded([tool, ...args], 5000);
  return (output.stdout + output.stderr).trim().split("\n")[0];
}

async function cpuName(): Promise<string> {
  const info = await readProc("/proc/cpuinfo");
  return /^model name\s*:\s*(.+)$/m.exec(info)?.[1].trim() ?? "unknown CPU";
}

/** The CPUs this process may run on (from /proc/self/status). */
async function allowedCpus(): Promise<number[]> {
  // Our children inherit our CPU set, so a child's view is ours.
  const status = await readProc("/proc/self/status");
  const list = /^Cpus_allowed_list:\s*(.+)$/m.exec(status)?.[1] ?? "";
  const cpus: number[] = [];
  for (const part of list.split(",")) {
    const [from, to] = part.split("-").map(Number);
    if (Number.isInteger(from)) {
      for (let cpu = from; cpu <= (to ?? from); cpu++) cpus.push(cpu);
    }
  }
  return cpus;
}
