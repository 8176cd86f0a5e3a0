/**
 * The benchmark suite: runs each of our servers beside its baselines on
 * loopback, drives every one with the same load, and prints one table of
 * figures and ratios to the baseline each target is measured against.
 *
 * Run:    deno task bench [--quick] [--mode echo,chat,…] [--write]
 *         deno task bench --list    (the modes, and which can run yet)
 *         deno task bench --chart   (redraw bench/chart.svg from RESULTS.md)
 *
 * How a figure is made: for each round, each server of a mode is started on
 * port 0 (we wait for its `Listening on` line), warmed up, measured, and
 * stopped by its own PID (SIGTERM, then SIGKILL after a bound). The order of
 * servers rotates every round and each figure is the best of the rounds, so
 * a burst of noise from other processes hurts one run, not a whole server.
 * The load comes from bench/loadgen.c, compiled with `cc` at bench time
 * (bench/load.ts when there is no compiler) or from `wrk` for HTTP; its CPU
 * time is printed beside each figure so a saturated client shows. With
 * `taskset` and two or more CPUs, servers run on CPU 0 and load on CPU 1.
 * Every run draws its ratios as a chart, bench/results/chart.svg (and with
 * --write bench/chart.svg, which RESULTS.md shows).
 */
import {
  parseCommandLine,
  parseInteger,
  parseSeconds,
  runCommand,
  UsageError,
} from "../lib/cli.ts";
import {
  type Environment,
  hasCommand,
  prepareEnvironment,
  ROOT,
  runBounded,
  type ServerSpec,
  startServer,
  stopAllNow,
} from "./harness.ts";
import { type Metric, type Mode, MODES, type Prepared } from "./modes.ts";
import {
  buildRows,
  COLUMN,
  formatTable,
  LOAD_BOUND,
  LOAD_COLUMN,
  PER_CPU,
  percent,
  type Result,
  type Row,
} from "./report.ts";
import { barsFromRows, parseTable, renderChart } from "./chart.ts";

// The servers and load clients started here stay on loopback: no "is there
// a newer Deno?" lookup from any of them.
Deno.env.set("DENO_NO_UPDATE_CHECK", "1");

const USAGE = `Usage: deno task bench [options]

Runs our servers beside their baselines and prints figures and ratios.

Options:
  --quick            short runs and a smaller upload, fewer servers: under 90 s
  --mode LIST        modes to run, comma-separated (default: all that can):
                     ${MODES.map((mode) => mode.name).join(", ")}
                     a mode named here whose script of ours is not there
                     yet runs its baselines alone
  --list             list the modes and whether each can run yet, then exit
  --servers LIST     only these server ids (see the table's "id" column)
  --metrics LIST     only these metric ids (e.g. rr1,rr50,stream)
  --rounds N         runs per server and metric; the best counts (default 5, quick 2)
  --seconds S        measured seconds per run (default 1, quick 0.3)
  --warmup S         unmeasured warm-up seconds per run (default 0.3, quick 0.15)
  --upload-mib N     size of the upload file in MiB (default 256, quick 32)
  --chat-lines N     lines of the chat burst (default 20000)
  --paced-rate N     lines/s of the paced chat talker (default 2000)
  --js-load          use bench/load.ts even when a C compiler is present
  --no-pin           do not pin servers and load to separate CPUs
  --write            also write the table to bench/RESULTS.md and the chart
                     to bench/chart.svg
  --chart            only redraw bench/chart.svg from bench/RESULTS.md
  -h, --help         show this help`;

async function main(): Promise<number> {
  const { values } = parseCommandLine(Deno.args, {
    usage: USAGE,
    options: {
      quick: { type: "boolean", default: false },
      mode: { type: "string" },
      servers: { type: "string" },
      metrics: { type: "string" },
      rounds: { type: "string" },
      seconds: { type: "string" },
      warmup: { type: "string" },
      "upload-mib": { type: "string" },
      "chat-lines": { type: "string" },
      "paced-rate": { type: "string" },
      list: { type: "boolean", default: false },
      chart: { type: "boolean", default: false },
      "js-load": { type: "boolean", default: false },
      "no-pin": { type: "boolean", default: false },
      write: { type: "boolean", default: false },
    },
  });
  if (values.list) return await listModes();
  if (values.chart) return await redrawChart();
  const quick = values.quick;
  const modes = pick(MODES, values.mode, "--mode");
  const named = values.mode !== undefined;
  const serverFilter = listOption(values.servers);
  const metricFilter = listOption(values.metrics);

  const environment = await prepareEnvironment({
    quick,
    rounds: values.rounds
      ? parseInteger(values.rounds, "--rounds", 1, 20)
      : quick
      ? 2
      : 5,
    seconds: values.seconds
      ? parseSeconds(values.seconds, "--seconds")
      : quick
      ? 0.3
      : 1,
    warmup: values.warmup
      ? parseSeconds(values.warmup, "--warmup")
      : quick
      ? 0.15
      : 0.3,
    uploadBytes: (values["upload-mib"]
      ? parseInteger(values["upload-mib"], "--upload-mib", 1, 4096)
      : quick
      ? 32
      : 256) * 1024 * 1024,
    chatLines: values["chat-lines"]
      ? parseInteger(values["chat-lines"], "--chat-lines", 10, 10_000_000)
      : 20_000,
    pacedRate: values["paced-rate"]
      ? parseInteger(values["paced-rate"], "--paced-rate", 1, 1_000_000)
      : 2000,
    forceJsLoad: values["js-load"],
    pin: !values["no-pin"],
  });
  const started = Date.now();
  console.error(environment.describe());
  // On Ctrl-C (or SIGINT to us alone), stop what we started, by PID, and
  // remove the scratch directory.
  const interrupted = () => {
    stopAllNow();
    Deno.removeSync(environment.scratch, { recursive: true });
    Deno.exit(130);
  };
  Deno.addSignalListener("SIGINT", interrupted);

  const rows: Row[] = [];
  const notes: string[] = [];
  try {
    for (const mode of modes) {
      const status = await modeStatus(mode);
      if (status.missingTool || (status.notYet && !named)) {
        const line = `${mode.name}: skipped — ${
          status.missingTool ?? `not yet: ${status.notYet}`
        }`;
        console.error(line);
        notes.push(line);
        continue;
      }
      if (status.notYet) {
        const line =
          `${mode.name}: our server not yet (${status.notYet}): its baselines alone`;
        console.error(line);
        notes.push(line);
      }
      let servers: ServerSpec[] = [];
      for (const server of mode.servers) {
        if (serverFilter && !serverFilter.includes(server.id)) continue;
        if (quick && server.quick === false && !serverFilter) continue;
        const missing = await missingTools(server);
        if (missing) {
          const line = `${mode.name}: ${server.label} skipped — ${missing}`;
          console.error(line);
          notes.push(line);
          continue;
        }
        servers.push(server);
      }
      const metrics = mode.metrics.filter((metric) =>
        (!metricFilter || metricFilter.includes(metric.id)) &&
        !(quick && metric.quick === false)
      );
      if (servers.length === 0 || metrics.length === 0) continue;
      const modeStarted = performance.now();
      let prepared: Prepared | void = undefined;
      try {
        prepared = await mode.prepare?.(environment, servers);
      } catch (error) {
        const line = `${mode.name}: preparing failed — ${
          (error as Error).message
        }`;
        console.error(line);
        notes.push(line);
      }
      for (const [id, why] of Object.entries(prepared?.skip ?? {})) {
        const server = servers.find((candidate) => candidate.id === id);
        if (!server) continue;
        const line = `${mode.name}: ${server.label} skipped — ${why}`;
        console.error(line);
        notes.push(line);
        servers = servers.filter((other) => other !== server);
      }
      try {
        const results = await runMode(
          mode,
          servers,
          metrics,
          environment,
          notes,
        );
        rows.push(...buildRows(mode, results, servers, metrics));
      } finally {
        await prepared?.cleanup?.();
      }
      console.error(
        `${mode.name}: ${
          ((performance.now() - modeStarted) / 1000).toFixed(1)
        } s`,
      );
    }
  } finally {
    Deno.removeSignalListener("SIGINT", interrupted);
    await environment.cleanUp();
  }

  const table = formatTable(rows);
  if (rows.some((row) => row[LOAD_COLUMN].endsWith("⚠"))) {
    notes.push(
      `⚠: the load client used ≥ ${
        LOAD_BOUND * 100
      }% of its CPU, so that figure may be the client's limit, not the server's`,
    );
  }
  if (rows.some((row) => row[COLUMN.target].endsWith(PER_CPU))) {
    notes.push(
      `${PER_CPU}: ours and its baseline both had a saturated load client, so the target is judged on the per server CPU-s ratio`,
    );
  }
  console.log(table);
  for (const note of notes) console.log(`- ${note}`);
  const chart = renderChart(
    barsFromRows(rows),
    subtitle(environment.describe(), quick),
  );
  await Deno.mkdir(new URL("./results/", import.meta.url), {
    recursive: true,
  });
  await Deno.writeTextFile(
    new URL("./results/chart.svg", import.meta.url),
    chart,
  );
  console.error("Wrote bench/results/chart.svg");
  if (values.write) {
    await writeResults(environment, table, notes, quick);
    await Deno.writeTextFile(new URL("./chart.svg", import.meta.url), chart);
    console.error("Wrote bench/RESULTS.md and bench/chart.svg");
  }
  // From the process's start: compiling the load client and making
  // certificates count too.
  console.log(
    `\nSuite time: ${(performance.now() / 1000).toFixed(1)} s (measuring ${
      ((Date.now() - started) / 1000).toFixed(1)
    } s)`,
  );
  return 0;
}

/** The chart's second line: when, on what, with which command. */
function subtitle(description: string, quick: boolean): string {
  const field = (name: string) =>
    new RegExp(`^-?\\s*${name}: (.*)$`, "m").exec(description)?.[1] ?? "";
  const command = /`(deno task bench[^`]*)`/.exec(description)?.[1] ??
    `deno task bench${quick ? " --quick" : ""}`;
  return [field("Date"), command, field("Machine")].filter(Boolean).join(
    " · ",
  );
}

/** --chart: the chart of the table in RESULTS.md, written to chart.svg. */
async function redrawChart(): Promise<number> {
  const text = await Deno.readTextFile(
    new URL("./RESULTS.md", import.meta.url),
  );
  const start = text.indexOf(START);
  const end = text.indexOf(END);
  if (start < 0 || end < 0) {
    throw new UsageError("bench/RESULTS.md has no table written by --write");
  }
  const section = text.slice(start, end);
  const { header, rows } = parseTable(section);
  await Deno.writeTextFile(
    new URL("./chart.svg", import.meta.url),
    renderChart(barsFromRows(rows, header), subtitle(section, false)),
  );
  console.error(`Wrote bench/chart.svg from ${rows.length} rows of RESULTS.md`);
  return 0;
}

/** --list: every mode, whether it can run now, and what it measures. */
async function listModes(): Promise<number> {
  for (const mode of MODES) {
    const status = await modeStatus(mode);
    const state = status.missingTool
      ? `skipped: ${status.missingTool}`
      : status.notYet
      ? `not yet: ${status.notYet}`
      : "ready";
    console.log(`${mode.name}: ${state}`);
    console.log(
      `  servers: ${mode.servers.map((server) => server.id).join(", ")}`,
    );
    console.log(
      `  metrics: ${mode.metrics.map((metric) => metric.id).join(", ")}`,
    );
  }
  return 0;
}

/**
 * One mode: every round starts each server in turn (rotating the order),
 * runs every metric against it, and stops it.
 */
async function runMode(
  mode: Mode,
  servers: ServerSpec[],
  metrics: Metric[],
  environment: Environment,
  notes: string[],
): Promise<Map<string, Result>> {
  const results = new Map<string, Result>();
  const resultFor = (server: ServerSpec, metric: string) => {
    const key = `${server.id}/${metric}`;
    let result = results.get(key);
    if (!result) {
      result = { server: server.id, metric, samples: [], errors: [] };
      results.set(key, result);
    }
    return result;
  };
  for (let round = 0; round < environment.rounds; round++) {
    const shift = round % servers.length;
    const order = [...servers.slice(shift), ...servers.slice(0, shift)];
    for (const server of order) {
      let running;
      try {
        running = await startServer(server, environment);
      } catch (error) {
        const message = `start failed: ${(error as Error).message}`;
        console.error(`${mode.name}: ${server.label} ${message}`);
        for (const metric of metrics) {
          resultFor(server, metric.id).errors.push(message);
        }
        continue;
      }
      try {
        for (const metric of metrics) {
          const result = resultFor(server, metric.id);
          try {
            const sample = await metric.run(running, environment);
            result.samples.push(sample);
            console.error(
              `${mode.name} ${round + 1}/${environment.rounds} ${
                server.label.padEnd(26)
              } ${metric.label}: ${metric.format(sample.value)} (load CPU ${
                percent(sample.loadCpu)
              }, server CPU ${percent(sample.serverCpu)})`,
            );
          } catch (error) {
            result.errors.push((error as Error).message);
            console.error(
              `${mode.name}: ${server.label} ${metric.label} failed: ${
                (error as Error).message
              }`,
            );
          }
        }
      } finally {
        const stopped = await running.stop();
        if (stopped.problem && server.ours) {
          const line =
            `${mode.name}: ${server.label} on SIGTERM: ${stopped.problem}`;
          if (!notes.includes(line)) notes.push(line);
        }
      }
    }
  }
  return results;
}

/**
 * Whether a mode can run: `notYet` names our missing script or option
 * (baselines may still run), `missingTool` a tool it cannot do without.
 */
async function modeStatus(
  mode: Mode,
): Promise<{ notYet?: string; missingTool?: string }> {
  for (const tool of mode.tools ?? []) {
    if (!(await hasCommand(tool))) {
      return { missingTool: `${tool} is not installed` };
    }
  }
  for (const entry of mode.requires ?? []) {
    const problem = await requirementProblem(entry);
    if (problem) return { notYet: problem };
  }
  return {};
}

const helpTexts = new Map<string, Promise<string>>();

/**
 * Why "scripts/x.ts" or "scripts/x.ts --flag" is not there yet: the file is
 * missing, or its --help does not mention the option.
 */
async function requirementProblem(entry: string): Promise<string | undefined> {
  const [file, option] = entry.split(/\s+/);
  try {
    await Deno.stat(`${ROOT}${file}`);
  } catch {
    return `${file} missing`;
  }
  if (!option) return undefined;
  let help = helpTexts.get(file);
  if (!help) {
    help = runBounded(
      [Deno.execPath(), "run", "--no-prompt", `${ROOT}${file}`, "--help"],
      30_000,
    ).then((output) => output.stdout);
    helpTexts.set(file, help);
  }
  const mentioned = new RegExp(`(^|[\\s\\[,])${option}\\b`, "m");
  return mentioned.test(await help) ? undefined : `${file} has no ${option}`;
}

async function missingTools(server: ServerSpec): Promise<string | undefined> {
  for (const tool of server.tools ?? []) {
    if (!(await hasCommand(tool))) return `${tool} is not installed`;
  }
  return server.script ? await requirementProblem(server.script) : undefined;
}

function listOption(value: string | undefined): string[] | undefined {
  return value?.split(",").map((item) => item.trim()).filter(Boolean);
}

function pick<T extends { name: string }>(
  all: T[],
  value: string | undefined,
  option: string,
): T[] {
  const names = listOption(value);
  if (!names) return all;
  for (const name of names) {
    if (!all.some((item) => item.name === name)) {
      throw new UsageError(
        `${option}: unknown '${name}' (choose from ${
          all.map((item) => item.name).join(", ")
        })`,
      );
    }
  }
  return all.filter((item) => names.includes(item.name));
}

const START = "<!-- bench:start -->";
const END = "<!-- bench:end -->";

async function writeResults(
  environment: Environment,
  table: string,
  notes: string[],
  quick: boolean,
) {
  const path = new URL("./RESULTS.md", import.meta.url);
  let existing = "";
  try {
    existing = await Deno.readTextFile(path);
  } catch {
    // First run: start the file.
  }
  const start = START;
  const end = END;
  const generated = [
    start,
    "",
    environment.describe().split("\n").map((line) => `- ${line}`).join("\n"),
    `- Command: \`deno task bench${quick ? " --quick" : ""}\``,
    "",
    table,
    "",
    ...notes.map((note) => `- ${note}`),
    "",
    end,
  ].join("\n");
  let text;
  if (existing.includes(start) && existing.includes(end)) {
    text = existing.slice(0, existing.indexOf(start)) + generated +
      existing.slice(existing.indexOf(end) + end.length);
  } else {
    text = `# Benchmark results\n\nWritten by \`deno task bench --write\`; ` +
      `see bench/bench.ts for how figures are made.\n\n${generated}\n`;
  }
  await Deno.writeTextFile(path, text);
  // Keep the file as `deno fmt` wants it, so `deno task check` stays clean.
  await new Deno.Command(Deno.execPath(), {
    args: ["fmt", "--quiet", path.pathname],
    stdout: "null",
    stderr: "inherit",
  }).output();
}

if (import.meta.main) {
  await runCommand("bench.ts", main);
}
