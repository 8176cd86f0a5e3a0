// How a figure is measured: a Metric drives one running server and returns
// a Sample. Most metrics run the load client (loadMetric); upload sends one
// file and checks the answer; wrk measures the HTTP servers.
import {
  type Environment,
  type LoadReport,
  memoryKiB,
  runBounded,
  runLoad,
  type RunningServer,
  type Sample,
  serverCpuSeconds,
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
  /** Smaller is better (latency): the best round is the lowest. */
  lowerIsBetter?: boolean;
  /** Skipped by --quick (false): only in full runs. */
  quick?: boolean;
  /** Secondary figures read from the same runs. */
  extras?: Extra[];
  run(server: RunningServer, environment: Environment): Promise<Sample>;
}

export const count = (value: number) =>
  Math.round(value).toLocaleString("en-US");
export const decimal = (digits: number) => (value: number) =>
  value.toFixed(digits);

export interface LoadMetricSpec {
  id: string;
  label: string;
  /** The load client's mode (rr, stream, udp, chat, burst, paced, rpc, dns). */
  load: string;
  /** Its options; a function when they depend on the run. */
  options?:
    | Record<string, string | number | boolean>
    | ((environment: Environment) => Record<string, string | number | boolean>);
  /** The figure from the report. */
  value(report: LoadReport): number;
  format(value: number): string;
  lowerIsBetter?: boolean;
  quick?: boolean;
  extras?: Extra[];
  /** Throws when a run must not count (lines lost, a server behind). */
  check?(report: LoadReport, environment: Environment): void;
  /** Measured seconds from the suite's (default: --seconds). */
  seconds?(environment: Environment): number;
}

/** A metric driven by the load client. */
export function loadMetric(spec: LoadMetricSpec): Metric {
  return {
    id: spec.id,
    label: spec.label,
    format: spec.format,
    lowerIsBetter: spec.lowerIsBetter,
    quick: spec.quick,
    extras: spec.extras,
    async run(server, environment) {
      const options = typeof spec.options === "function"
        ? spec.options(environment)
        : spec.options;
      const { report, serverCpu } = await runLoad(
        environment,
        server,
        spec.load,
        {
          ...options,
          warmup: environment.warmup,
          duration: spec.seconds?.(environment) ?? environment.seconds,
        },
      );
      if (report.ops === 0) throw new Error("no traffic got through");
      spec.check?.(report, environment);
      const extra: Record<string, number> = {
        p99_ms: report.p99_us / 1000,
        p50_ms: report.p50_us / 1000,
      };
      // Server CPU per operation: CPU-seconds per million operations.
      if (serverCpu !== undefined) {
        extra.cpu_per_mop = serverCpu * report.seconds / report.ops * 1e6;
      }
      return {
        value: spec.value(report),
        loadCpu: report.cpu / report.seconds,
        serverCpu,
        extra,
      };
    },
  };
}

export const perSecond = (report: LoadReport) => report.ops / report.seconds;
export const megabytesPerSecond = (report: LoadReport) =>
  report.bytes / report.seconds / 1e6;
export const p99Milliseconds = (report: LoadReport) => report.p99_us / 1000;

export const p50Extra: Extra = {
  key: "p50_ms",
  label: "p50 delivery latency ms",
  format: decimal(2),
  lowerIsBetter: true,
};
export const p99Extra = (label: string): Extra => ({
  key: "p99_ms",
  label,
  format: decimal(2),
  lowerIsBetter: true,
});
export const cpuPerMillionExtra = (what: string): Extra => ({
  key: "cpu_per_mop",
  label: `server CPU-s per million ${what}`,
  format: decimal(2),
  lowerIsBetter: true,
});

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

/**
 * One upload of the suite's file. Servers speaking the UPLOAD protocol must
 * answer `200 OK <size> <sha256>`; a raw receiver (`rawUpload`) gets the
 * bytes alone and must leave them in `upload.bin`, and a raw pipeline that
 * answers (`pipeline`) must answer the SHA-256.
 */
export const uploadMetric: Metric = {
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
    // A raw receiver exits when the upload ends: watch its peak meanwhile.
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
        throw new Error(`wrote ${written} of ${source.size} bytes`);
      }
      if (server.spec.pipeline && report.reply !== source.sha256) {
        throw new Error(`answered '${report.reply ?? "(nothing)"}'`);
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

/** A raw receiver has flushed everything once it exits; give it a moment. */
async function waitForSize(path: string, size: number): Promise<number> {
  let current = 0;
  for (let attempt = 0; attempt < 200; attempt++) {
    current = (await Deno.stat(path).catch(() => ({ size: 0 }))).size;
    if (current === size) break;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return current;
}

/** Requests/s from wrk, one thread and 50 connections on the load CPU. */
export const wrkMetric: Metric = {
  id: "wrk",
  label: "requests/s, wrk 50 conns",
  format: count,
  async run(server, environment) {
    const scheme = server.scheme === "https" ? "https" : "http";
    const url = `${scheme}://127.0.0.1:${server.port}/`;
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
    const before = await serverCpuSeconds(server);
    const started = performance.now();
    const output = await wrk(seconds);
    const wall = (performance.now() - started) / 1000;
    const after = await serverCpuSeconds(server);
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
