// What bench.ts measures: per mode, the servers (ours first, then the
// baselines the issue names) and the metrics, each a function that drives
// one running server and returns a Sample.
import {
  BENCH,
  cpuSeconds,
  type Environment,
  memoryKiB,
  ROOT,
  runBounded,
  runLoad,
  type RunningServer,
  type Sample,
  type ServerSpec,
  startServer,
} from "./harness.ts";

export interface Extra {
  /** Key in Sample.extra. */
  key: string;
  label: string;
  format(value: number): string;
  /** Smaller is better (latency): best of rounds is the minimum. */
  lowerIsBetter?: boolean;
  /** Report the worst round (peak memory), and no ratio. */
  worstCase?: boolean;
}

export interface Metric {
  id: string;
  label: string;
  format(value: number): string;
  /** Secondary figures read from the same runs. */
  extras?: Extra[];
  run(server: RunningServer, environment: Environment): Promise<Sample>;
}

export interface Mode {
  name: string;
  /** Runs once before the mode's rounds (with the servers that will run). */
  prepare?(environment: Environment, servers: ServerSpec[]): Promise<void>;
  /** Our scripts the mode cannot run without. */
  requires?: string[];
  /** Tools the mode cannot run without. */
  tools?: string[];
  servers: ServerSpec[];
  metrics: Metric[];
}

const deno =
  (file: string, permissions = ["--allow-net"]) => (extra: string[] = []) => [
    Deno.execPath(),
    "run",
    ...permissions,
    file,
    "--port",
    "0",
    ...extra,
  ];
const script = (name: string) => `${ROOT}scripts/${name}`;
const baseline = (name: string) => `${BENCH}baselines/${name}`;
const node = (name: string) => () => [
  "node",
  baseline(name),
  "--port",
  "0",
];
const python = (name: string) => () => [
  "python3",
  baseline(name),
  "--port",
  "0",
];

const count = (value: number) => Math.round(value).toLocaleString("en-US");
const decimal = (digits: number) => (value: number) => value.toFixed(digits);

/** A metric driven by the load client: `value` turns its report into a figure. */
function loadMetric(
  id: string,
  label: string,
  mode: string,
  options: Record<string, number>,
  value: (report: { ops: number; bytes: number; seconds: number }) => number,
  format: (value: number) => string,
  extras?: Extra[],
): Metric {
  return {
    id,
    label,
    format,
    extras,
    async run(server, environment) {
      const { report, serverCpu } = await runLoad(environment, server, mode, {
        ...options,
        warmup: environment.warmup,
        duration: environment.seconds,
      });
      if (report.ops === 0) throw new Error("no traffic got through");
      return {
        value: value(report),
        loadCpu: report.cpu / report.seconds,
        serverCpu,
        extra: { p99_ms: report.p99_us / 1000, p50_ms: report.p50_us / 1000 },
      };
    },
  };
}

const perSecond = (report: { ops: number; seconds: number }) =>
  report.ops / report.seconds;
const megabytesPerSecond = (report: { bytes: number; seconds: number }) =>
  report.bytes / report.seconds / 1e6;

const echo: Mode = {
  name: "echo",
  requires: ["scripts/echo_server.ts"],
  servers: [
    {
      id: "ours",
      label: "echo_server.ts",
      ours: true,
      script: "scripts/echo_server.ts",
      command: () => deno(script("echo_server.ts"))(),
      vs: "deno-loop",
      target: 0.95,
    },
    {
      id: "deno-loop",
      label: "Deno read/write loop",
      command: () => deno(baseline("deno_echo_loop.ts"))(),
      vs: "deno-loop",
    },
    {
      id: "deno-pipe",
      label: "Deno pipeTo",
      command: () => deno(baseline("deno_echo_pipe.ts"))(),
      vs: "deno-loop",
    },
    {
      id: "node",
      label: "Node net",
      tools: ["node"],
      command: node("node_echo.mjs"),
      vs: "deno-loop",
    },
    {
      id: "python",
      label: "Python asyncio",
      tools: ["python3"],
      command: python("python_echo.py"),
      vs: "deno-loop",
    },
  ],
  metrics: [
    loadMetric(
      "rr1",
      "round trips/s, 1 conn, 64 B",
      "rr",
      { conns: 1, size: 64 },
      perSecond,
      count,
    ),
    loadMetric(
      "rr50",
      "round trips/s, 50 conns, 64 B",
      "rr",
      { conns: 50, size: 64 },
      perSecond,
      count,
    ),
    loadMetric(
      "stream",
      "stream MB/s, 1 conn, 64 KiB writes",
      "stream",
      { conns: 1, size: 65536 },
      megabytesPerSecond,
      count,
    ),
  ],
};

const udp: Mode = {
  name: "udp",
  requires: ["scripts/udp_server.ts"],
  servers: [
    {
      id: "ours",
      label: "udp_server.ts",
      ours: true,
      script: "scripts/udp_server.ts",
      command: () => deno(script("udp_server.ts"))(),
      vs: "deno-udp-loop",
      target: 0.95,
    },
    {
      id: "deno-udp-loop",
      label: "Deno receive(buffer)/send loop, no stamp",
      command: () =>
        deno(baseline("deno_udp_loop.ts"), ["--allow-net", "--unstable-net"])(),
      vs: "deno-udp-loop",
    },
    {
      id: "deno-udp",
      label: "Deno for-await listenDatagram loop",
      command: () =>
        deno(baseline("deno_udp.ts"), ["--allow-net", "--unstable-net"])(),
      vs: "deno-udp-loop",
    },
    {
      id: "node",
      label: "Node dgram",
      tools: ["node"],
      command: node("node_udp.mjs"),
      vs: "deno-udp-loop",
    },
    {
      id: "python",
      label: "Python asyncio",
      tools: ["python3"],
      command: python("python_udp.py"),
      vs: "deno-udp-loop",
    },
  ],
  metrics: [
    loadMetric(
      "udp1",
      "round trips/s, 1 socket, 64 B",
      "udp",
      { conns: 1, size: 64 },
      perSecond,
      count,
    ),
    loadMetric(
      "udp50",
      "round trips/s, 50 sockets, 64 B",
      "udp",
      { conns: 50, size: 64 },
      perSecond,
      count,
    ),
  ],
};

const chat: Mode = {
  name: "chat",
  requires: ["scripts/chat_server.ts"],
  servers: [
    {
      id: "ours",
      label: "chat_server.ts",
      ours: true,
      script: "scripts/chat_server.ts",
      command: () => deno(script("chat_server.ts"))(),
      vs: "node-chat",
      target: 1.0,
    },
    {
      id: "node-chat",
      label: "Node net chat (30 lines)",
      tools: ["node"],
      command: node("node_chat.mjs"),
      vs: "node-chat",
    },
    {
      id: "ncat",
      label: "ncat --chat",
      tools: ["ncat"],
      silent: true,
      command: ({ port }) => [
        "ncat",
        "--chat",
        "--max-conns",
        "1000",
        "--listen",
        "127.0.0.1",
        String(port),
      ],
      vs: "node-chat",
    },
  ],
  metrics: [
    loadMetric(
      "chat100",
      "lines delivered/s, 100 clients",
      "chat",
      { conns: 100, size: 48, depth: 1 },
      perSecond,
      count,
      [{
        key: "p99_ms",
        label: "p99 delivery latency ms, 100 clients",
        format: decimal(2),
        lowerIsBetter: true,
      }],
    ),
  ],
};

/** The file every upload sends, made once per suite run. */
let uploadSource:
  | Promise<{ path: string; size: number; sha256: string }>
  | undefined;

function makeUploadSource(environment: Environment) {
  uploadSource ??= (async () => {
    const path = `${environment.scratch}/upload-source.bin`;
    const block = new Uint8Array(1024 * 1024);
    for (let offset = 0; offset < block.length; offset += 65536) {
      crypto.getRandomValues(block.subarray(offset, offset + 65536));
    }
    const whole = new Uint8Array(environment.uploadBytes);
    for (let offset = 0; offset < whole.length; offset += block.length) {
      whole.set(block.subarray(0, whole.length - offset), offset);
    }
    await Deno.writeFile(path, whole);
    const digest = new Uint8Array(
      await crypto.subtle.digest("SHA-256", whole),
    );
    const sha256 = Array.from(
      digest,
      (byte) => byte.toString(16).padStart(2, "0"),
    ).join("");
    return { path, size: whole.length, sha256 };
  })();
  return uploadSource;
}

let uploads = 0;

const uploadMetric: Metric = {
  id: "upload",
  label: "upload MB/s",
  format: count,
  extras: [{
    key: "peak_rss_mib",
    label: "server peak RSS MiB (idle → peak)",
    format: decimal(1),
    worstCase: true,
  }],
  async run(server, environment) {
    const source = await makeUploadSource(environment);
    const name = `bench-${++uploads}.bin`;
    const idle = await memoryKiB(server.pid, "VmRSS");
    // nc exits when the upload ends, so watch its peak while it runs.
    let peak = 0;
    const sampler = setInterval(async () => {
      peak = Math.max(peak, await memoryKiB(server.pid, "VmHWM") ?? 0);
    }, 20);
    let result;
    try {
      result = await runLoad(environment, server, "upload", {
        file: source.path,
        name,
        raw: server.spec.rawUpload ?? false,
      });
    } finally {
      clearInterval(sampler);
    }
    peak = Math.max(peak, await memoryKiB(server.pid, "VmHWM") ?? 0);
    const { report, serverCpu } = result;
    if (server.spec.rawUpload) {
      const written = await waitForSize(
        `${server.dir}/upload.bin`,
        source.size,
      );
      if (written !== source.size) {
        throw new Error(`nc wrote ${written} of ${source.size} bytes`);
      }
      if (server.spec.pipeline) {
        const sum = await waitForText(`${server.dir}/upload.bin.sha256`);
        if (!sum.startsWith(source.sha256)) {
          throw new Error(`openssl printed '${sum.trim()}'`);
        }
      }
    } else {
      const expected = `200 OK ${source.size} ${source.sha256}`;
      if (report.reply !== expected) {
        throw new Error(
          `expected '${expected}', got '${report.reply ?? "(nothing)"}'`,
        );
      }
      await Deno.remove(`${server.dir}/${name}`);
    }
    // nc can end before we sample it: its peak is at least what it started with.
    peak = Math.max(peak, idle ?? 0);
    return {
      value: report.bytes / report.seconds / 1e6,
      loadCpu: report.cpu / report.seconds,
      // A pipeline's CPU is spread over processes we do not watch.
      serverCpu: server.spec.pipeline ? undefined : serverCpu,
      extra: server.spec.pipeline ? undefined : {
        peak_rss_mib: peak / 1024,
        idle_rss_mib: (idle ?? 0) / 1024,
      },
    };
  },
};

/** nc has flushed everything once it exits; give it a moment to do so. */
async function waitForSize(path: string, size: number): Promise<number> {
  let current = 0;
  for (let attempt = 0; attempt < 200; attempt++) {
    current = (await Deno.stat(path).catch(() => ({ size: 0 }))).size;
    if (current === size) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return current;
}

/** Waits (bounded) for a small file a pipeline writes when it ends. */
async function waitForText(path: string): Promise<string> {
  for (let attempt = 0; attempt < 500; attempt++) {
    const text = await Deno.readTextFile(path).catch(() => "");
    if (text.endsWith("\n")) return text;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return "";
}

const upload: Mode = {
  name: "upload",
  requires: ["scripts/upload_server.ts"],
  servers: [
    {
      id: "ours",
      label: "upload_server.ts",
      ours: true,
      script: "scripts/upload_server.ts",
      command: ({ dir }) =>
        deno(script("upload_server.ts"), [
          "--allow-net",
          `--allow-read=${dir}`,
          `--allow-write=${dir}`,
        ])(["--dir", dir]),
      vs: "nc",
      target: 0.8,
    },
    {
      id: "nc",
      label: "nc -l > file",
      tools: ["nc"],
      silent: true,
      rawUpload: true,
      command: ({ port, dir }) => [
        "sh",
        "-c",
        'exec nc -d -l 127.0.0.1 "$1" > "$2"',
        "sh",
        String(port),
        `${dir}/upload.bin`,
      ],
      vs: "nc",
    },
    {
      // Not a target, an explanation: nc plus the SHA-256 we must compute.
      id: "nc-sha",
      label: "nc -l | tee file | openssl sha256",
      tools: ["nc", "openssl", "tee"],
      silent: true,
      rawUpload: true,
      pipeline: true,
      command: ({ port, dir }) => [
        "sh",
        "-c",
        'nc -d -l 127.0.0.1 "$1" | tee "$2" | openssl dgst -sha256 -r > "$2.sha256"',
        "sh",
        String(port),
        `${dir}/upload.bin`,
      ],
      vs: "nc",
    },
  ],
  metrics: [uploadMetric],
};

/** Requests/s from wrk, one thread and 50 connections on the load CPU. */
const wrkMetric: Metric = {
  id: "wrk",
  label: "requests/s, wrk 50 conns",
  format: count,
  async run(server, environment) {
    const url = `http://127.0.0.1:${server.port}/`;
    const seconds = Math.max(1, Math.round(environment.seconds));
    const wrk = (duration: number) =>
      runBounded([
        "sh",
        "-c",
        // `times` prints the CPU time of the shell's children: wrk's.
        '"$@"; status=$?; times >&2; exit $status',
        "sh",
        ...environment.loadPrefix,
        "wrk",
        "-t1",
        "-c50",
        `-d${duration}s`,
        url,
      ], duration * 1000 + 30_000);
    if (!environment.quick) await wrk(1); // JIT warm-up, not measured
    const before = await cpuSeconds(server.pid);
    const started = performance.now();
    const output = await wrk(seconds);
    const wall = (performance.now() - started) / 1000;
    const after = await cpuSeconds(server.pid);
    const rate = /Requests\/sec:\s*([\d.]+)/.exec(output.stdout);
    if (output.code !== 0 || !rate) {
      throw new Error(`wrk failed: ${output.stdout}${output.stderr}`);
    }
    const bad = /Non-2xx or 3xx responses: (\d+)/.exec(output.stdout);
    if (bad) throw new Error(`${bad[1]} responses were not 2xx`);
    const errors = /Socket errors: (.*)/.exec(output.stdout);
    if (errors) console.error(`  wrk socket errors: ${errors[1]}`);
    const times = [...output.stderr.matchAll(/(\d+)m([\d.]+)s/g)]
      .map((match) => Number(match[1]) * 60 + Number(match[2]));
    const loadCpu = times.length >= 4
      ? (times[2] + times[3]) / wall
      : undefined;
    return {
      value: Number(rate[1]),
      loadCpu,
      serverCpu: before !== undefined && after !== undefined
        ? (after - before) / wall
        : undefined,
    };
  },
};

const httpServer: ServerSpec = {
  id: "ours",
  label: "http_server.ts",
  ours: true,
  script: "scripts/http_server.ts",
  command: ({ dir }) =>
    deno(script("http_server.ts"), [
      "--allow-net",
      `--allow-read=${dir}`,
      `--allow-write=${dir}`,
    ])(["--dir", dir]),
  vs: "deno-serve",
  target: 0.95,
};

/** Where the http mode keeps http_server.ts's "/" page for deno-page. */
const pagePath = (scratch: string) => `${scratch}/http_server_page.html`;
let pageType = "text/html";

const http: Mode = {
  name: "http",
  tools: ["wrk"],
  async prepare(environment, servers) {
    if (!servers.some((server) => server.id === "deno-page")) return;
    const running = await startServer(httpServer, environment);
    try {
      const response = await fetch(`http://127.0.0.1:${running.port}/`);
      pageType = response.headers.get("content-type") ?? pageType;
      await Deno.writeTextFile(
        pagePath(environment.scratch),
        await response.text(),
      );
    } finally {
      await running.stop();
    }
  },
  servers: [
    httpServer,
    {
      id: "ours-raw",
      label: "http_raw_server.ts",
      ours: true,
      script: "scripts/http_raw_server.ts",
      command: () => deno(script("http_raw_server.ts"))(),
      vs: "node-http",
      target: 1.0,
    },
    {
      id: "deno-serve",
      label: "Deno.serve hello",
      command: () => deno(baseline("deno_http.ts"))(),
      vs: "deno-serve",
    },
    {
      id: "deno-page",
      label: "Deno.serve, http_server.ts's page",
      script: "scripts/http_server.ts",
      command: ({ scratch }) => {
        const page = pagePath(scratch);
        return deno(baseline("deno_http_page.ts"), [
          "--allow-net",
          `--allow-read=${page}`,
        ])(["--page", page, "--type", pageType]);
      },
      vs: "deno-serve",
    },
    {
      id: "deno-route",
      label: "Deno.serve hello + path check",
      command: () => deno(baseline("deno_http_route.ts"))(),
      vs: "deno-serve",
    },
    {
      id: "node-http",
      label: "Node http hello",
      tools: ["node"],
      command: node("node_http.mjs"),
      vs: "node-http",
    },
  ],
  metrics: [wrkMetric],
};

export const MODES: Mode[] = [echo, udp, chat, upload, http];
