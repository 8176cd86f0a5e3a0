// Turning runs into the table: the best round per server and metric, its
// ratio to the baseline the issue names, the target, and how noisy it was.
import type { Sample, ServerSpec } from "./harness.ts";
import type { Metric, Mode } from "./modes.ts";

/** All rounds of one server on one metric. */
export interface Result {
  server: string;
  metric: string;
  samples: Sample[];
  errors: string[];
}

export type Row = string[];

export const HEADER = [
  "mode",
  "metric",
  "server [id]",
  "figure",
  "ratio",
  "vs",
  "target",
  "spread",
  "per server CPU-s ratio",
  "load CPU",
  "server CPU",
];

/** Where each column is, by its header. */
export const COLUMN: Record<string, number> = Object.fromEntries(
  HEADER.map((name, index) => [name, index]),
);
/** Column of the load CPU figure (bench.ts looks for the ⚠ there). */
export const LOAD_COLUMN = COLUMN["load CPU"];

/** The rows of one mode: per metric (and each extra figure), per server. */
export function buildRows(
  mode: Mode,
  results: Map<string, Result>,
  servers: ServerSpec[],
  metrics: Metric[],
): Row[] {
  const rows: Row[] = [];
  for (const metric of metrics) {
    const lower = metric.lowerIsBetter ?? false;
    const best = (server: string) => {
      const samples = results.get(`${server}/${metric.id}`)?.samples ?? [];
      return samples.reduce<Sample | undefined>(
        (top, sample) =>
          !top || (lower ? sample.value < top.value : sample.value > top.value)
            ? sample
            : top,
        undefined,
      );
    };
    // Figure per second of server CPU, the median over rounds: another
    // process stealing the server's CPU lowers its figure in that round, but
    // hardly what it achieves per CPU-second, so this ratio stays steady under
    // noise (it means little where the server idles, as with one connection,
    // and nothing for a latency).
    const efficiency = (server: string) => {
      if (lower) return undefined;
      const values = (results.get(`${server}/${metric.id}`)?.samples ?? [])
        .filter((sample) => (sample.serverCpu ?? 0) > 0.05)
        .map((sample) => sample.value / sample.serverCpu!)
        .sort((a, b) => a - b);
      return values.length ? values[Math.floor(values.length / 2)] : undefined;
    };
    const label = metric.label + (lower ? " (lower is better)" : "");
    for (const server of servers) {
      const result = results.get(`${server.id}/${metric.id}`);
      const top = best(server.id);
      const reference = server.vs ? best(server.vs) : undefined;
      if (!top) {
        rows.push([
          mode.name,
          label,
          `${server.label} [${server.id}]`,
          `failed: ${result?.errors[0] ?? "no run"}`.replaceAll("|", "/"),
          "",
          versus(server),
          server.target ? `${targetText(server.target, lower)} ✘` : "",
          "",
          "",
          "",
          "",
        ]);
        continue;
      }
      const ratio = reference ? top.value / reference.value : undefined;
      const values = result!.samples.map((sample) => sample.value);
      const spread = values.length > 1
        ? (Math.max(...values) - Math.min(...values)) /
          Math.max(...values)
        : undefined;
      const ours = efficiency(server.id);
      const theirs = server.vs ? efficiency(server.vs) : undefined;
      const perCpu = ours && theirs ? ours / theirs : undefined;
      rows.push([
        mode.name,
        label,
        `${server.label} [${server.id}]`,
        metric.format(top.value),
        ratio === undefined ? "" : `${ratio.toFixed(2)}×`,
        ratio === undefined ? "" : versus(server),
        server.target
          ? judge(server.target, lower, ratio, perCpu, top, reference)
          : "",
        spread === undefined ? "" : `${Math.round(spread * 100)}%`,
        perCpu === undefined ? "" : `${perCpu.toFixed(2)}×`,
        percent(top.loadCpu) + (loadBound(top) ? " ⚠" : ""),
        percent(top.serverCpu),
      ]);
    }
    for (const extra of metric.extras ?? []) {
      for (const server of servers) {
        const samples = results.get(`${server.id}/${metric.id}`)?.samples ??
          [];
        const values = samples.map((sample) => sample.extra?.[extra.key])
          .filter((value): value is number => value !== undefined);
        if (values.length === 0) continue;
        const pick = extra.worstCase
          ? Math.max(...values)
          : extra.lowerIsBetter
          ? Math.min(...values)
          : Math.max(...values);
        let ratio = "";
        if (!extra.worstCase && server.vs) {
          const reference = (results.get(`${server.vs}/${metric.id}`)
            ?.samples ?? []).map((sample) => sample.extra?.[extra.key])
            .filter((value): value is number => value !== undefined);
          if (reference.length > 0) {
            const base = extra.lowerIsBetter
              ? Math.min(...reference)
              : Math.max(...reference);
            ratio = `${(pick / base).toFixed(2)}×`;
          }
        }
        let figure = extra.format(pick);
        if (extra.worstCase) {
          const idle = samples.map((sample) => sample.extra?.idle_rss_mib)
            .filter((value): value is number => !!value);
          if (idle.length > 0) {
            figure = `${extra.format(Math.min(...idle))} → ${figure}`;
          }
        }
        rows.push([
          mode.name,
          extra.label + (extra.lowerIsBetter ? " (lower is better)" : ""),
          `${server.label} [${server.id}]`,
          figure,
          ratio,
          ratio ? versus(server) : "",
          "",
          "",
          "",
          "",
          "",
        ]);
      }
    }
  }
  return rows;
}

/** The baseline a ratio divides by (blank for the baseline itself). */
function versus(server: ServerSpec): string {
  return server.vs && server.vs !== server.id ? server.vs : "";
}

/**
 * A target is the least acceptable "goodness" (how many times better than
 * the baseline): a ratio ≥ T for figures, ≤ 1/T for latencies.
 */
function targetText(target: number, lower: boolean): string {
  return lower ? `≤ ${(1 / target).toFixed(2)}` : `≥ ${target.toFixed(2)}`;
}

/** Marks the text judged on CPU time rather than the figure. */
export const PER_CPU = "per CPU-s";

/**
 * ✔ or ✘ against the target. When both our server and its baseline had a
 * load client at its limit, the figures show the client, not the servers:
 * then the judge is the per-CPU-second ratio (server CPU per operation).
 */
function judge(
  target: number,
  lower: boolean,
  ratio: number | undefined,
  perCpu: number | undefined,
  top: Sample,
  reference: Sample | undefined,
): string {
  const text = targetText(target, lower);
  if (ratio === undefined) return `${text} ?`;
  if (
    !lower && perCpu !== undefined && reference && loadBound(top) &&
    loadBound(reference)
  ) {
    return `${text} ${perCpu >= target ? "✔" : "✘"} ${PER_CPU}`;
  }
  const met = lower ? ratio <= 1 / target : ratio >= target;
  return `${text} ${met ? "✔" : "✘"}`;
}

/** A load client this busy may itself have set the pace. */
export const LOAD_BOUND = 0.9;

export function loadBound(sample: Sample): boolean {
  return (sample.loadCpu ?? 0) >= LOAD_BOUND;
}

/** A CPU share as the table and the progress lines show it: "85%", "?". */
export function percent(fraction: number | undefined): string {
  return fraction === undefined ? "?" : `${Math.round(fraction * 100)}%`;
}

/** A Markdown table with padded columns (as `deno fmt` would write it). */
export function formatTable(rows: Row[]): string {
  // A "|" inside a cell would end it early: Markdown wants it escaped.
  const all = [HEADER, ...rows].map((row) =>
    row.map((cell) => (cell ?? "").replaceAll("|", "\\|"))
  );
  const widths = HEADER.map((_, column) =>
    Math.max(3, ...all.map((row) => [...(row[column] ?? "")].length))
  );
  const line = (row: Row) =>
    `| ${
      row.map((cell, column) => pad(cell ?? "", widths[column])).join(" | ")
    } |`;
  return [
    line(all[0]),
    `| ${widths.map((width) => "-".repeat(width)).join(" | ")} |`,
    ...all.slice(1).map(line),
  ].join("\n");
}

function pad(text: string, width: number): string {
  return text + " ".repeat(width - [...text].length);
}
