// Tests of the benchmark suite. Small real runs (a fraction of a second of
// load each) check that servers start, are measured against the right
// baseline and are stopped; the table, the chart and the dnsmasq options
// are checked from fixed inputs. Baselines that need a tool skip visibly
// without it.
import assert from "node:assert/strict";
import { hasCommand, runTool, skipBecause } from "./helpers.ts";
import { barsFromRows, parseTable, renderChart } from "../bench/chart.ts";
import { buildRows, formatTable, type Result } from "../bench/report.ts";
import type { Metric, Mode } from "../bench/modes.ts";
import { dnsmasqArgs, type ZoneRecord } from "../bench/fixtures.ts";
import {
  type Environment,
  type ServerSpec,
  startServer,
} from "../bench/harness.ts";

const BENCH = new URL("../bench/bench.ts", import.meta.url).pathname;
const ROOT = new URL("../", import.meta.url).pathname;
const PERMISSIONS = [
  "--allow-net",
  "--allow-run",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
];

async function runBench(args: string[], limitMs = 60_000) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...PERMISSIONS, BENCH, ...args],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), limitMs);
  try {
    const output = await child.output();
    const decoder = new TextDecoder();
    return {
      code: output.code,
      stdout: decoder.decode(output.stdout),
      stderr: decoder.decode(output.stderr),
    };
  } finally {
    clearTimeout(timer);
  }
}

/** The table's rows of one mode, as cells. */
function tableRows(stdout: string, mode: string): string[][] {
  return stdout.split("\n").filter((line) => line.startsWith(`| ${mode} `))
    .map((line) => line.split("|").slice(1, -1).map((cell) => cell.trim()));
}

/** The row of a server [id] on a metric whose label starts with `metric`. */
function rowOf(rows: string[][], metric: string, id: string) {
  return rows.find((row) =>
    row[1].startsWith(metric) && row[2].endsWith(`[${id}]`)
  );
}

/** Whether a process with this id exists (ps exits 1 when not). */
async function isRunning(pid: number): Promise<boolean> {
  const { code } = await new Deno.Command("ps", {
    args: ["-p", String(pid)],
    stdout: "null",
    stderr: "null",
  }).output();
  return code === 0;
}

/** Every server a run started was stopped by its PID. */
async function assertAllStopped(stderr: string, expected: number) {
  const pids = [...stderr.matchAll(/ started as pid (\d+) /g)].map((match) =>
    Number(match[1])
  );
  assert.equal(pids.length, expected, stderr);
  for (const pid of pids) assert.equal(await isRunning(pid), false);
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("bench: one tiny echo run prints a table and leaves no server behind", async () => {
  const result = await runBench([
    "--mode",
    "echo",
    "--metrics",
    "rr1",
    "--servers",
    "ours,deno-loop",
    "--rounds",
    "1",
    "--warmup",
    "0.1",
    "--seconds",
    "0.3",
  ]);
  assert.equal(result.code, 0, result.stderr);
  const rows = tableRows(result.stdout, "echo");
  assert.equal(rows.length, 2, result.stdout);
  const [ours, loop] = rows;
  assert.equal(ours[2], "echo_server.ts [ours]");
  assert.equal(loop[2], "Deno read/write loop [deno-loop]");
  // A figure (round trips per second) and a ratio for each, the loop 1.00×.
  assert.match(ours[3], /^[\d,]+$/);
  assert.ok(Number(ours[3].replaceAll(",", "")) > 100, ours[3]);
  assert.match(ours[4], /^\d+\.\d\d×$/);
  assert.equal(ours[5], "deno-loop");
  assert.equal(loop[4], "1.00×");
  assert.match(ours[6], /^≥ 0\.95 [✔✘]/);
  assert.match(result.stderr, /^Load: /m);
  assert.match(result.stdout, /^Suite time: [\d.]+ s/m);
  await assertAllStopped(result.stderr, 2);
});

Deno.test("bench: an unknown mode is a usage error: one line, exit 2", async () => {
  const wrong = await runBench(["--mode", "nonsense"]);
  assert.equal(wrong.code, 2);
  assert.match(wrong.stderr, /^bench\.ts: --mode: unknown 'nonsense'/);
  assert.doesNotMatch(wrong.stderr, /at .*\.ts:\d+/);
});

Deno.test("bench: --list says which modes wait for which script of ours", async () => {
  const result = await runBench(["--list"]);
  assert.equal(result.code, 0, result.stderr);
  const status = new Map(
    [...result.stdout.matchAll(/^(\w+): (.*)$/gm)].map((match) => [
      match[1],
      match[2],
    ]),
  );
  for (
    const mode of [
      "echo",
      "udp",
      "chat",
      "upload",
      "http",
      "tls",
      "https",
      "rpc",
      "web",
      "dns",
      "redis",
    ]
  ) {
    assert.ok(status.has(mode), `${mode} missing from:\n${result.stdout}`);
  }
  // Whole scripts: "missing" exactly while the file does not exist.
  for (
    const [mode, file] of [["rpc", "rpc_server.ts"], ["dns", "dns_server.ts"]]
  ) {
    const missing = `not yet: scripts/${file} missing`;
    if (await exists(`${ROOT}scripts/${file}`)) {
      assert.notEqual(status.get(mode), missing);
    } else {
      assert.equal(status.get(mode), missing);
    }
  }
  // Options of scripts that exist: read from their --help.
  const chatHelp = await runTool(Deno.execPath(), [
    "run",
    `${ROOT}scripts/chat_server.ts`,
    "--help",
  ]);
  const hasRedis = new TextDecoder().decode(chatHelp.stdout).includes(
    "--redis",
  );
  assert.equal(
    status.get("redis") === "not yet: scripts/chat_server.ts has no --redis",
    !hasRedis,
    status.get("redis"),
  );
  assert.equal(status.get("echo"), "ready");
});

Deno.test("bench: the chat burst and paced runs and the upload, each against its same-work Node baseline", async () => {
  if (!(await hasCommand("node"))) return skipBecause("node is not installed");
  const result = await runBench([
    "--mode",
    "chat,upload",
    "--servers",
    "ours,node-expert,node-upload",
    "--metrics",
    "burst,paced,upload",
    "--chat-lines",
    "2000",
    // A tenth of the real rate: a test on a busy machine checks the
    // machinery, not whether the server keeps 2,000 lines/s.
    "--paced-rate",
    "200",
    "--upload-mib",
    "4",
    "--rounds",
    "1",
    "--warmup",
    "0.1",
    "--seconds",
    "0.3",
  ]);
  assert.equal(result.code, 0, result.stderr);
  const chat = tableRows(result.stdout, "chat");
  const burst = rowOf(chat, "lines delivered/s, burst", "ours");
  const expert = rowOf(chat, "lines delivered/s, burst", "node-expert");
  assert.ok(burst && expert, result.stdout);
  assert.match(burst[3], /^[\d,]+$/, burst.join(" | "));
  assert.equal(expert[4], "1.00×");
  assert.equal(burst[5], "node-expert");
  assert.match(burst[6], /^≥ 1\.00 [✔✘]/);
  // Lower is better for the paced p99: its target reads "≤".
  const paced = rowOf(chat, "p99 delivery ms", "ours");
  assert.ok(paced, result.stdout);
  assert.match(paced[1], /\(lower is better\)$/);
  assert.match(paced[3], /^\d+\.\d\d$/, paced.join(" | "));
  assert.match(paced[6], /^≤ 1\.00 [✔✘]$/);
  assert.ok(rowOf(chat, "server CPU-s per million delivered lines", "ours"));
  assert.ok(rowOf(chat, "p50 delivery latency ms", "node-expert"));
  const upload = tableRows(result.stdout, "upload");
  const ours = rowOf(upload, "upload MB/s", "ours");
  const node = rowOf(upload, "upload MB/s", "node-upload");
  assert.ok(ours && node, result.stdout);
  assert.equal(node[4], "1.00×");
  assert.equal(ours[5], "node-upload");
  assert.match(ours[6], /^≥ 1\.00 [✔✘]$/);
  assert.ok(rowOf(upload, "server peak RSS MiB", "node-upload"));
  await assertAllStopped(result.stderr, 4);
  // The run drew its chart.
  const chart = await Deno.readTextFile(`${ROOT}bench/results/chart.svg`);
  assert.match(chart, /data-mode="upload"/);
});

Deno.test("bench: a mode named with --mode runs its baselines alone until our script exists", async () => {
  // mode, metric id, label, baseline id, our script, tools it needs
  const all = [
    [
      "tls",
      "tls-rr50",
      "TLS round trips/s",
      "node-tls",
      "scripts/echo_server.ts",
      [
        "node",
        "openssl",
      ],
    ],
    [
      "rpc",
      "rpc1",
      "JSON-RPC add calls/s",
      "node-rpc",
      "scripts/rpc_server.ts",
      [
        "node",
      ],
    ],
    ["dns", "dns50", "DNS queries/s", "dnsmasq", "scripts/dns_server.ts", [
      "dnsmasq",
    ]],
  ] as const;
  const cases = [];
  for (const entry of all) {
    const missing = [];
    for (const tool of entry[5]) {
      if (!(await hasCommand(tool))) missing.push(tool);
    }
    if (missing.length > 0) {
      skipBecause(`${entry[0]}: ${missing.join(", ")} not installed`);
    } else cases.push(entry);
  }
  if (cases.length === 0) return;
  const result = await runBench([
    "--mode",
    cases.map((entry) => entry[0]).join(","),
    "--metrics",
    cases.map((entry) => entry[1]).join(","),
    "--rounds",
    "1",
    "--warmup",
    "0.1",
    "--seconds",
    "0.3",
  ]);
  assert.equal(result.code, 0, result.stderr);
  for (const [mode, , metric, id, script] of cases) {
    const rows = tableRows(result.stdout, mode);
    const row = rowOf(rows, metric, id);
    assert.ok(row, `${mode}: no ${id} row in\n${result.stdout}`);
    assert.match(row[3], /^[\d,]+$/, row.join(" | "));
    assert.ok(Number(row[3].replaceAll(",", "")) > 100, row[3]);
    assert.equal(row[4], "1.00×");
    // While ours is missing the run says so; once it exists it is measured.
    if (!rows.some((other) => /\[ours-/.test(other[2]))) {
      assert.ok(
        result.stdout.includes(`- ${mode}: our server not yet (${script}`),
        result.stdout,
      );
    }
  }
  assert.doesNotMatch(result.stdout, /failed:/);
});

// ---- the table and the chart, from fixed results ----

const sample = (
  value: number,
  loadCpu = 0.5,
  serverCpu = 0.9,
  extra?: Record<string, number>,
) => ({ value, loadCpu, serverCpu, extra });

const metric = (id: string, label: string, lowerIsBetter = false): Metric => ({
  id,
  label,
  format: (value) => value.toFixed(2),
  lowerIsBetter,
  run: () => Promise.reject(new Error("not run in this test")),
});

const server = (
  id: string,
  vs: string,
  target?: number,
): ServerSpec => ({
  id,
  label: `${id} server`,
  ours: id.startsWith("ours"),
  vs,
  target,
  command: () => [],
});

function fixedRows() {
  const servers = [server("ours", "base", 0.95), server("base", "base")];
  const metrics = [
    metric("fast", "ops/s"),
    metric("lat", "p99 ms", true),
    metric("busy", "lines/s"),
    metric("gone", "calls/s"),
  ];
  const mode: Mode = { name: "demo", servers, metrics };
  const results = new Map<string, Result>();
  const put = (id: string, metricId: string, samples: Result["samples"]) =>
    results.set(`${id}/${metricId}`, {
      server: id,
      metric: metricId,
      samples,
      errors: samples.length ? [] : ["boom"],
    });
  // 900 vs 1000: 0.90×, under the 0.95 target.
  put("ours", "fast", [sample(800), sample(900)]);
  put("base", "fast", [sample(1000)]);
  // p99 1 ms vs 2 ms: ratio 0.50, twice as good, target ≤ 1/0.95.
  put("ours", "lat", [sample(1.5), sample(1)]);
  put("base", "lat", [sample(2)]);
  // Both load clients saturated: half the figure, but 400 per server
  // CPU-second against 200, so judged on CPU time it meets the target.
  put("ours", "busy", [sample(100, 0.95, 0.25)]);
  put("base", "busy", [sample(200, 0.97, 1.0)]);
  // Ours failed.
  put("ours", "gone", []);
  put("base", "gone", [sample(50)]);
  return buildRows(mode, results, servers, metrics);
}

Deno.test("bench report: ratios, targets (≥ for figures, ≤ for latencies) and the per-CPU judgement", () => {
  const rows = fixedRows();
  const ours = (label: string) =>
    rows.find((row) =>
      row[1].startsWith(label) && row[2] === "ours server [ours]"
    )!;
  assert.deepEqual(ours("ops/s").slice(3, 7), [
    "900.00",
    "0.90×",
    "base",
    "≥ 0.95 ✘",
  ]);
  assert.deepEqual(ours("p99 ms").slice(1, 7), [
    "p99 ms (lower is better)",
    "ours server [ours]",
    "1.00",
    "0.50×",
    "base",
    "≤ 1.05 ✔",
  ]);
  assert.deepEqual(ours("lines/s").slice(4, 10), [
    "0.50×",
    "base",
    "≥ 0.95 ✔ per CPU-s",
    "",
    "2.00×",
    "95% ⚠",
  ]);
  assert.equal(ours("calls/s")[3], "failed: boom");
  assert.equal(ours("calls/s")[6], "≥ 0.95 ✘");
});

Deno.test("bench chart: well-formed SVG with one bar per metric of ours, the 1.0× line and the targets", async () => {
  const rows = fixedRows();
  const bars = barsFromRows(rows);
  assert.deepEqual(
    bars.map((bar) => [bar.metric, bar.value, bar.target, bar.met]),
    [
      ["ops/s", 0.9, 0.95, false],
      ["p99 ms", 2, 1 / 1.05, true],
      ["lines/s", 2, 0.95, true],
      ["calls/s", undefined, 0.95, false],
    ],
  );
  assert.equal(bars[2].perCpu, true);
  assert.equal(bars[3].failed, "failed: boom");
  assert.equal(bars[0].baseline, "base server");
  // The same bars from the Markdown table as written to RESULTS.md.
  const table = parseTable(formatTable(rows));
  assert.deepEqual(barsFromRows(table.rows, table.header), bars);
  // A table from before the "vs" column still reads (without baselines).
  const old = parseTable(
    formatTable(rows).split("\n").map((line) =>
      line.split("|").filter((_, index) => index !== 6).join("|")
    ).join("\n"),
  );
  assert.equal(old.header.includes("vs"), false);
  assert.deepEqual(
    barsFromRows(old.rows, old.header),
    bars.map((bar) => ({ ...bar, baseline: undefined })),
  );

  const svg = renderChart(bars, "a <test> run & more");
  // Self-contained: no scripts, links, images or styles from elsewhere.
  assert.doesNotMatch(svg, /<script|href=|<image|url\(|@import/);
  if (!(await hasCommand("python3"))) {
    return skipBecause("python3 is not installed (XML parser)");
  }
  // Python's XML parser (not ours) reads it back.
  const reader = `
import json, sys, xml.etree.ElementTree as ET
root = ET.fromstring(sys.stdin.read())
ns = "{http://www.w3.org/2000/svg}"
bars = [dict(g.attrib) for g in root.iter(ns + "g") if g.get("class") == "bar"]
baseline = [l.attrib for l in root.iter(ns + "line") if l.get("class") == "baseline"]
targets = [g for g in root.iter(ns + "g") if g.get("class") == "target"]
texts = "".join(t.text or "" for t in root.iter(ns + "text"))
print(json.dumps({"tag": root.tag, "bars": bars, "baseline": baseline,
  "targets": len(targets), "texts": texts}))
`;
  const parsed = await runTool("python3", ["-c", reader], svg);
  assert.equal(parsed.code, 0, parsed.stderr);
  const chart = JSON.parse(new TextDecoder().decode(parsed.stdout));
  assert.equal(chart.tag, "{http://www.w3.org/2000/svg}svg");
  assert.deepEqual(
    chart.bars.map((bar: Record<string, string>) => [
      bar["data-metric"],
      bar["data-value"],
      bar["data-target"],
      bar["data-met"],
    ]),
    [
      ["ops/s", "0.90", "0.95", "no"],
      ["p99 ms", "2.00", "0.95", "yes"],
      ["lines/s", "2.00", "0.95", "yes"],
      ["calls/s", undefined, "0.95", "no"],
    ],
  );
  assert.equal(chart.baseline.length, 1);
  assert.equal(chart.targets, 4);
  assert.match(chart.texts, /a <test> run & more/);
  assert.match(chart.texts, /ours server ÷ base server/);
  assert.match(chart.texts, /0\.90× \(target 0\.95× missed\)/);
  assert.match(chart.texts, /2\.00× per CPU-s ⚠ load-bound/);
  assert.match(chart.texts, /failed: boom/);
});

Deno.test("bench fixtures: the zone becomes dnsmasq options for the same records", () => {
  const zone: ZoneRecord[] = [
    { name: "www.bench.test", type: "A", value: "127.0.0.1" },
    { name: "www.bench.test", type: "AAAA", value: "::1" },
    { name: "alias.bench.test", type: "CNAME", value: "www.bench.test" },
    { name: "bench.test", type: "MX", value: "10 mail.bench.test" },
    { name: "txt.bench.test", type: "TXT", value: "hello world" },
  ];
  const args = dnsmasqArgs(zone, 5353);
  // Loopback only, foreground, nothing read from the system or upstream.
  for (
    const option of [
      "--no-daemon",
      "--port=5353",
      "--listen-address=127.0.0.1",
      "--bind-interfaces",
      "--no-resolv",
      "--no-hosts",
      "--conf-file=/dev/null",
    ]
  ) {
    assert.ok(args.includes(option), option);
  }
  const records = args.filter((arg) =>
    /^--(host-record|cname|mx-host|txt-record|local)=/.test(arg)
  );
  assert.deepEqual(records, [
    "--host-record=www.bench.test,127.0.0.1",
    "--host-record=www.bench.test,::1",
    "--cname=alias.bench.test,www.bench.test",
    "--mx-host=bench.test,mail.bench.test,10",
    "--txt-record=txt.bench.test,hello world",
    "--local=/bench.test/",
  ]);
  // A comma would split the string in two there: refused, not mangled.
  assert.throws(
    () =>
      dnsmasqArgs([{ name: "t.bench.test", type: "TXT", value: "a, b" }], 53),
    /cannot serve the TXT 'a, b'/,
  );
});

Deno.test("bench harness: a server with two Listening lines is loaded on the second; instances start and stop together", async () => {
  const scratch = await Deno.makeTempDir({ prefix: "bench-test-" });
  const environment = { serverPrefix: [], scratch } as unknown as Environment;
  // Prints a tcp line (for a port nothing listens on) and then an http
  // line for a real listener: only the second may be the load port.
  const program = `
const b = Deno.listen({ hostname: "127.0.0.1", port: 0 });
console.log("Listening on tcp://127.0.0.1:1");
console.log("Listening on http://127.0.0.1:" + b.addr.port);
setInterval(() => {}, 60_000);`;
  const spec: ServerSpec = {
    id: "two",
    label: "two lines",
    listenLines: 2,
    instances: 2,
    command: () => [Deno.execPath(), "eval", program],
  };
  let running: Awaited<ReturnType<typeof startServer>> | undefined;
  try {
    running = await startServer(spec, environment);
    assert.equal(running.pids.length, 2);
    assert.equal(running.ports.length, 2);
    assert.notEqual(running.ports[0], running.ports[1]);
    assert.equal(running.scheme, "http");
    // The load ports are the second lines': open listeners.
    for (const port of running.ports) {
      const conn = await Deno.connect({ hostname: "127.0.0.1", port });
      conn.close();
    }
    assert.equal(running.alive(), true);
    await running.stop();
    for (const pid of running.pids) assert.equal(await isRunning(pid), false);
  } finally {
    await running?.stop();
    await Deno.remove(scratch, { recursive: true });
  }
});

Deno.test("bench harness: the directory instances share is removed once, after the last one stopped", async () => {
  const scratch = await Deno.makeTempDir({ prefix: "bench-test-" });
  const environment = { serverPrefix: [], scratch } as unknown as Environment;
  // On SIGTERM the first instance exits at once; the other still writes to
  // the directory half a second later (exit code 1 if it is gone by then).
  const program = `
const dir = Deno.args[0];
Deno.addSignalListener("SIGTERM", async () => {
  try {
    Deno.mkdirSync(dir + "/first");
  } catch {
    await new Promise((resolve) => setTimeout(resolve, 500));
    Deno.writeTextFileSync(dir + "/late", "still here");
  }
  Deno.exit(0);
});
const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
console.log("Listening on tcp://127.0.0.1:" + listener.addr.port);
setInterval(() => {}, 60_000);`;
  const spec: ServerSpec = {
    id: "shared",
    label: "two sharing a directory",
    ours: true, // a non-zero exit is a problem stop() reports
    instances: 2,
    command: ({ dir }) => [Deno.execPath(), "eval", program, dir],
  };
  let running: Awaited<ReturnType<typeof startServer>> | undefined;
  try {
    running = await startServer(spec, environment);
    assert.equal(running.pids.length, 2);
    assert.equal(await exists(running.dir), true);
    assert.deepEqual(await running.stop(), { problem: undefined });
    assert.equal(await exists(running.dir), false);
  } finally {
    await running?.stop();
    await Deno.remove(scratch, { recursive: true });
  }
});
