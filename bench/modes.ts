// What bench.ts measures: per mode, the servers (ours first, then the
// baselines the issue names) and the metrics (bench/metrics.ts).
//
// Adding a mode is one entry here plus a baseline file in baselines/:
// - `requires`: our script the mode exists for, as "scripts/x.ts" or
//   "scripts/x.ts --flag" (the flag must appear in its --help). Until it
//   does, the mode is skipped with "not yet: …", and run with its baselines
//   alone when named with --mode.
// - `servers`: ours (id "ours…", `ours: true`, `vs` the baseline it is
//   divided by, `target` the ratio it must reach) and the baselines; each
//   starts with --port 0 and prints `Listening on …`, or is `silent` (we
//   pick the port and watch /proc/net). Baselines that only explain (not
//   a `vs`) carry `quick: false` to keep --quick under 90 s.
// - `metrics`: usually loadMetric({ load: <loadgen mode>, options, value }).
// - `prepare`: anything made once before the rounds (certificates, a zone,
//   a Redis); it may return a clean-up and servers to skip, with why.
import {
  BENCH,
  type Environment,
  type LoadReport,
  ROOT,
  type ServerSpec,
  startServer,
} from "./harness.ts";
import {
  count,
  cpuPerMillionExtra,
  decimal,
  type Extra,
  loadMetric,
  megabytesPerSecond,
  type Metric,
  p50Extra,
  p99Extra,
  p99Milliseconds,
  perSecond,
  uploadMetric,
  wrkMetric,
} from "./metrics.ts";
import {
  BENCH_QUERIES,
  BENCH_ZONE,
  certificatePaths,
  dnsmasqArgs,
  installWs,
  makeRunCertificates,
  receiveScript,
  redisPort,
  startRedis,
  writeReceiveScript,
  writeZone,
  wsModules,
  zonePath,
} from "./fixtures.ts";

export type { Extra, Metric };

/** What a mode's prepare() hands back. */
export interface Prepared {
  /** Runs after the mode's last round (stops a Redis, say). */
  cleanup?(): Promise<void>;
  /** Servers (by id) that cannot run this time, with why. */
  skip?: Record<string, string>;
}

export interface Mode {
  name: string;
  /** Runs once before the mode's rounds (with the servers that will run). */
  prepare?(
    environment: Environment,
    servers: ServerSpec[],
  ): Promise<Prepared | void>;
  /** Our scripts (and options) the mode exists for; see the top. */
  requires?: string[];
  /** Tools the mode cannot run without. */
  tools?: string[];
  servers: ServerSpec[];
  metrics: Metric[];
}

/** `deno run PERMISSIONS FILE --port 0 EXTRA…` */
const deno = (
  file: string,
  permissions = ["--allow-net"],
  extra: string[] = [],
) => [
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
const node = (name: string, extra: string[] = []) => () => [
  "node",
  baseline(name),
  "--port",
  "0",
  ...extra,
];
const python = (name: string) => () => [
  "python3",
  baseline(name),
  "--port",
  "0",
];

const echo: Mode = {
  name: "echo",
  requires: ["scripts/echo_server.ts"],
  servers: [
    {
      id: "ours",
      label: "echo_server.ts",
      ours: true,
      script: "scripts/echo_server.ts",
      command: () => deno(script("echo_server.ts")),
      vs: "deno-loop",
      target: 0.95,
    },
    {
      id: "deno-loop",
      label: "Deno read/write loop",
      command: () => deno(baseline("deno_echo_loop.ts")),
      vs: "deno-loop",
    },
    {
      id: "deno-pipe",
      label: "Deno pipeTo",
      quick: false,
      command: () => deno(baseline("deno_echo_pipe.ts")),
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
      quick: false,
      command: python("python_echo.py"),
      vs: "deno-loop",
    },
  ],
  metrics: [
    loadMetric({
      id: "rr1",
      label: "round trips/s, 1 conn, 64 B",
      load: "rr",
      options: { conns: 1, size: 64 },
      value: perSecond,
      format: count,
    }),
    loadMetric({
      id: "rr50",
      label: "round trips/s, 50 conns, 64 B",
      load: "rr",
      options: { conns: 50, size: 64 },
      value: perSecond,
      format: count,
    }),
    loadMetric({
      id: "stream",
      label: "stream MB/s, 1 conn, 64 KiB writes",
      load: "stream",
      options: { conns: 1, size: 65536 },
      value: megabytesPerSecond,
      format: count,
    }),
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
      command: () => deno(script("udp_server.ts")),
      vs: "deno-udp-loop",
      target: 0.95,
    },
    {
      id: "deno-udp-loop",
      label: "Deno receive(buffer)/send loop, no stamp",
      command: () =>
        deno(baseline("deno_udp_loop.ts"), ["--allow-net", "--unstable-net"]),
      vs: "deno-udp-loop",
    },
    {
      id: "deno-udp",
      label: "Deno for-await listenDatagram loop",
      quick: false,
      command: () =>
        deno(baseline("deno_udp.ts"), ["--allow-net", "--unstable-net"]),
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
      quick: false,
      command: python("python_udp.py"),
      vs: "deno-udp-loop",
    },
  ],
  metrics: [
    loadMetric({
      id: "udp1",
      label: "round trips/s, 1 socket, 64 B",
      load: "udp",
      options: { conns: 1, size: 64 },
      value: perSecond,
      format: count,
    }),
    loadMetric({
      id: "udp50",
      label: "round trips/s, 50 sockets, 64 B",
      load: "udp",
      options: { conns: 50, size: 64 },
      value: perSecond,
      format: count,
    }),
  ],
};

/** Members of every chat room measured: one talker, the rest reading. */
const ROOM = 50;

/**
 * Burst: client 0 sends `lines` lines of 64 B at once; the figure is lines
 * delivered per second at the other 49 (each line counts once per reader).
 * All of them must arrive.
 */
function burstMetric(
  label: string,
  lines: (environment: Environment) => number,
  options: Record<string, string | number> = {},
  unit = "delivered lines",
): Metric {
  return loadMetric({
    id: "burst",
    label,
    load: "burst",
    options: (environment) => ({
      conns: ROOM,
      size: 64,
      lines: lines(environment),
      ...options,
    }),
    value: perSecond,
    format: count,
    check(report) {
      if (report.errors > 0) {
        throw new Error(
          `${report.errors} of ${
            report.ops + report.errors
          } deliveries missing after the load client's timeout`,
        );
      }
    },
    extras: [cpuPerMillionExtra(unit)],
  });
}

/**
 * Paced: client 0 sends --paced-rate lines/s (2,000), one write each; the
 * figure is the p99 of each line's delivery latency at the other 49. A server that falls
 * behind the rate (a fifth of the deliveries missing) does not count.
 */
function pacedMetric(
  label: string,
  options: Record<string, string | number> = {},
): Metric {
  return loadMetric({
    id: "paced",
    label,
    load: "paced",
    options: (environment) => ({
      conns: ROOM,
      size: 64,
      rate: environment.pacedRate,
      ...options,
    }),
    value: p99Milliseconds,
    format: decimal(2),
    lowerIsBetter: true,
    // Twice the usual window: a p99 wants a few thousand lines.
    seconds: (environment) => environment.seconds * 2,
    // Every line sent must reach the other 49, but for the last few
    // still in flight when the window closed. (Counted from the lines
    // actually sent: a load client short of CPU sends fewer.)
    check(report, environment) {
      const expected = (report.sent ?? environment.pacedRate * report.seconds) *
        (ROOM - 1);
      if (report.ops < 0.8 * expected) {
        throw new Error(
          `fell behind: ${report.ops} of ${Math.round(expected)} deliveries`,
        );
      }
    },
    extras: [p50Extra],
  });
}

const chatServer: ServerSpec = {
  id: "ours",
  label: "chat_server.ts",
  ours: true,
  script: "scripts/chat_server.ts",
  command: () => deno(script("chat_server.ts")),
  vs: "node-expert",
  target: 1.0,
};

const chat: Mode = {
  name: "chat",
  requires: ["scripts/chat_server.ts"],
  servers: [
    chatServer,
    {
      id: "node-expert",
      label: "Node net chat, expert",
      tools: ["node"],
      command: node("node_chat_expert.mjs"),
      vs: "node-expert",
    },
    {
      // The README's old reference; slow enough to cost seconds per round,
      // so only in full runs.
      id: "node-naive",
      label: "Node net chat, naive (30 lines)",
      tools: ["node"],
      quick: false,
      command: node("node_chat_naive.mjs"),
      vs: "node-expert",
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
      vs: "node-expert",
    },
  ],
  metrics: [
    burstMetric(
      "lines delivered/s, burst: 1 talker → 49 readers, 64 B",
      (environment) => environment.chatLines,
    ),
    pacedMetric("p99 delivery ms, paced talker → 49 readers"),
    loadMetric({
      id: "chat100",
      label: "lines delivered/s, 100 clients all talking",
      load: "chat",
      options: { conns: 100, size: 48, depth: 1 },
      value: perSecond,
      format: count,
      quick: false,
      extras: [p99Extra("p99 delivery latency ms, 100 clients talking")],
    }),
  ],
};

const upload: Mode = {
  name: "upload",
  requires: ["scripts/upload_server.ts"],
  async prepare(environment) {
    await writeReceiveScript(environment);
  },
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
        ], ["--dir", dir]),
      vs: "node-upload",
      target: 1.0,
    },
    {
      id: "node-upload",
      label: "Node net + crypto + fs, same work",
      tools: ["node"],
      command: ({ dir }) => node("node_upload.mjs", ["--dir", dir])(),
      vs: "node-upload",
    },
    {
      id: "shell",
      label: "socat → tee file | sha256sum; sync",
      tools: ["socat", "tee", "sha256sum", "sync"],
      silent: true,
      rawUpload: true,
      pipeline: true,
      command: ({ port, dir, scratch }) => [
        "socat",
        `TCP-LISTEN:${port},bind=127.0.0.1,reuseaddr`,
        `SYSTEM:sh ${receiveScript(scratch)} ${dir}/upload.bin`,
      ],
      vs: "node-upload",
    },
    {
      // Not the same work: no hash, no flush. The ceiling of the socket.
      id: "nc",
      label: "nc -l > file (no hash, no flush)",
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
      vs: "node-upload",
    },
  ],
  metrics: [uploadMetric],
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
    ], ["--dir", dir]),
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
      command: () => deno(script("http_raw_server.ts")),
      vs: "node-http",
      target: 1.0,
    },
    {
      id: "deno-serve",
      label: "Deno.serve hello",
      command: () => deno(baseline("deno_http.ts")),
      vs: "deno-serve",
    },
    {
      id: "deno-page",
      label: "Deno.serve, http_server.ts's page",
      quick: false,
      script: "scripts/http_server.ts",
      command: ({ scratch }) => {
        const page = pagePath(scratch);
        return deno(baseline("deno_http_page.ts"), [
          "--allow-net",
          `--allow-read=${page}`,
        ], ["--page", page, "--type", pageType]);
      },
      vs: "deno-serve",
    },
    {
      id: "deno-route",
      label: "Deno.serve hello + path check",
      quick: false,
      command: () => deno(baseline("deno_http_route.ts")),
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

/** --cert/--key of the run's certificates (made by prepare). */
const tlsFiles = (scratch: string) => {
  const { cert, key } = certificatePaths(scratch);
  return ["--cert", cert, "--key", key];
};
/** Deno permissions to read them. */
const readTls = (scratch: string) => {
  const { cert, key } = certificatePaths(scratch);
  return `--allow-read=${cert},${key}`;
};
/** The load client verifies the server against the run's CA. */
const trustRunCa = (environment: Environment) => ({
  cacert: certificatePaths(environment.scratch).ca,
});

const tls: Mode = {
  name: "tls",
  requires: ["scripts/echo_server.ts --cert"],
  tools: ["openssl"],
  async prepare(environment) {
    await makeRunCertificates(environment);
  },
  servers: [
    {
      id: "ours-tls",
      label: "echo_server.ts --cert --key",
      ours: true,
      script: "scripts/echo_server.ts --cert",
      command: ({ scratch }) =>
        deno(
          script("echo_server.ts"),
          ["--allow-net", readTls(scratch)],
          tlsFiles(scratch),
        ),
      vs: "node-tls",
      target: 1.0,
    },
    {
      id: "node-tls",
      label: "Node tls echo",
      tools: ["node"],
      command: ({ scratch }) => node("node_tls_echo.mjs", tlsFiles(scratch))(),
      vs: "node-tls",
    },
  ],
  metrics: [
    loadMetric({
      id: "tls-rr50",
      label: "TLS round trips/s, 50 conns, 64 B",
      load: "rr",
      options: (environment) => ({
        conns: 50,
        size: 64,
        ...trustRunCa(environment),
      }),
      value: perSecond,
      format: count,
    }),
    loadMetric({
      id: "tls-stream",
      label: "TLS stream MB/s, 1 conn, 64 KiB writes",
      load: "stream",
      options: (environment) => ({
        conns: 1,
        size: 65536,
        ...trustRunCa(environment),
      }),
      value: megabytesPerSecond,
      format: count,
    }),
  ],
};

const https: Mode = {
  name: "https",
  requires: ["scripts/http_server.ts --cert"],
  tools: ["wrk", "openssl"],
  async prepare(environment) {
    await makeRunCertificates(environment);
  },
  servers: [
    {
      id: "ours-https",
      label: "http_server.ts --cert --key",
      ours: true,
      script: "scripts/http_server.ts --cert",
      command: ({ dir, scratch }) =>
        deno(script("http_server.ts"), [
          "--allow-net",
          `${readTls(scratch)},${dir}`,
          `--allow-write=${dir}`,
        ], ["--dir", dir, ...tlsFiles(scratch)]),
      vs: "deno-https",
      target: 0.95,
    },
    {
      id: "deno-https",
      label: "Deno.serve hello, TLS",
      command: ({ scratch }) =>
        deno(
          baseline("deno_https.ts"),
          ["--allow-net", readTls(scratch)],
          tlsFiles(scratch),
        ),
      vs: "deno-https",
    },
    {
      id: "node-https",
      label: "Node https hello",
      tools: ["node"],
      quick: false,
      command: ({ scratch }) => node("node_https.mjs", tlsFiles(scratch))(),
      vs: "deno-https",
    },
  ],
  metrics: [{
    ...wrkMetric,
    id: "wrk-tls",
    label: "HTTPS requests/s, wrk 50 conns",
  }],
};

const rpc: Mode = {
  name: "rpc",
  requires: ["scripts/rpc_server.ts"],
  servers: [
    {
      id: "ours-rpc",
      label: "rpc_server.ts",
      ours: true,
      script: "scripts/rpc_server.ts",
      command: () => deno(script("rpc_server.ts")),
      vs: "node-rpc",
      target: 1.0,
    },
    {
      id: "node-rpc",
      label: "Node net JSON-RPC, expert",
      tools: ["node"],
      command: node("node_rpc.mjs"),
      vs: "node-rpc",
    },
  ],
  metrics: [
    loadMetric({
      id: "rpc1",
      label: "JSON-RPC add calls/s, 1 conn, 32 in flight",
      load: "rpc",
      options: { conns: 1, depth: 32 },
      value: perSecond,
      format: count,
      check: noErrors("wrong or error responses"),
      extras: [p99Extra("p99 call latency ms, 1 conn")],
    }),
    loadMetric({
      id: "rpc50",
      label: "JSON-RPC add calls/s, 50 conns, 4 in flight each",
      load: "rpc",
      options: { conns: 50, depth: 4 },
      value: perSecond,
      format: count,
      check: noErrors("wrong or error responses"),
      extras: [p99Extra("p99 call latency ms, 50 conns")],
    }),
  ],
};

function noErrors(what: string) {
  return (report: LoadReport) => {
    if (report.errors > 0) throw new Error(`${report.errors} ${what}`);
  };
}

/** The browser side of the chat: the same room over WebSocket at /ws. */
const web: Mode = {
  name: "web",
  requires: ["scripts/chat_server.ts --web-port"],
  async prepare(environment, servers) {
    if (!servers.some((server) => server.id === "node-ws")) return;
    const problem = await installWs(environment);
    return problem ? { skip: { "node-ws": problem } } : undefined;
  },
  servers: [
    {
      id: "ours-web",
      label: "chat_server.ts --web-port, WebSocket",
      ours: true,
      script: "scripts/chat_server.ts --web-port",
      // Two Listening lines, TCP then HTTP: the load uses the second.
      listenLines: 2,
      command: () =>
        deno(script("chat_server.ts"), ["--allow-net"], ["--web-port", "0"]),
      vs: "node-ws",
      target: 1.0,
    },
    {
      id: "node-ws",
      label: "Node ws room",
      tools: ["node", "npm"],
      command: ({ scratch }) =>
        node("node_ws_room.mjs", ["--modules", wsModules(scratch)])(),
      vs: "node-ws",
    },
  ],
  metrics: [
    // One message per frame each way makes this far slower than the TCP
    // room per line: a tenth of the lines keeps the run short.
    burstMetric(
      "messages delivered/s, burst: 1 talker → 49 readers",
      (environment) => Math.ceil(environment.chatLines / 10),
      { ws: "/ws" },
      "delivered messages",
    ),
    pacedMetric("p99 delivery ms, paced talker → 49 readers", {
      ws: "/ws",
    }),
  ],
};

const dns: Mode = {
  name: "dns",
  requires: ["scripts/dns_server.ts"],
  async prepare(environment) {
    await writeZone(environment);
  },
  servers: [
    {
      id: "ours-dns",
      label: "dns_server.ts",
      ours: true,
      script: "scripts/dns_server.ts",
      command: ({ scratch }) =>
        deno(script("dns_server.ts"), [
          "--allow-net",
          `--allow-read=${zonePath(scratch)}`,
        ], ["--zone", zonePath(scratch)]),
      vs: "dnsmasq",
    },
    {
      id: "dnsmasq",
      label: "dnsmasq, same zone",
      tools: ["dnsmasq"],
      silent: true,
      command: ({ port }) => ["dnsmasq", ...dnsmasqArgs(BENCH_ZONE, port)],
      vs: "dnsmasq",
    },
  ],
  metrics: [
    loadMetric({
      id: "dns1",
      label: "DNS queries/s over UDP, 1 socket",
      load: "dns",
      options: { conns: 1, queries: BENCH_QUERIES },
      value: perSecond,
      format: count,
      check: noErrors("queries unanswered or answered wrong"),
    }),
    loadMetric({
      id: "dns50",
      label: "DNS queries/s over UDP, 50 sockets",
      load: "dns",
      options: { conns: 50, queries: BENCH_QUERIES },
      value: perSecond,
      format: count,
      check: noErrors("queries unanswered or answered wrong"),
    }),
  ],
};

const redis: Mode = {
  name: "redis",
  requires: ["scripts/chat_server.ts --redis"],
  tools: ["redis-server"],
  async prepare(environment, servers) {
    if (!servers.some((server) => server.id === "ours-redis")) return;
    return { cleanup: await startRedis(environment) };
  },
  servers: [
    {
      id: "ours-redis",
      label: "2 × chat_server.ts --redis",
      ours: true,
      script: "scripts/chat_server.ts --redis",
      // Two servers on one Redis room: the talker is on the first, every
      // other reader on the second, so half the deliveries cross processes.
      instances: 2,
      // Both share the run's directory, whose name makes the room's: a
      // room per run, so rounds never hear each other.
      command: ({ dir }) =>
        deno(script("chat_server.ts"), ["--allow-net"], [
          "--redis",
          `redis://127.0.0.1:${redisPort}`,
          "--room",
          `bench-${dir.split("/").pop()}`,
        ]),
      vs: "single",
    },
    {
      ...chatServer,
      id: "single",
      label: "chat_server.ts alone",
      ours: false,
      vs: "single",
      target: undefined,
    },
  ],
  metrics: [pacedMetric("p99 delivery ms, paced talker → 49 readers")],
};

export const MODES: Mode[] = [
  echo,
  udp,
  chat,
  upload,
  http,
  tls,
  https,
  rpc,
  web,
  dns,
  redis,
];
