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

const HEADER = [
  "mode",
  "metric",
  "server [id]",
  "figure",
  "ratio",
  "target",
  "spread",
  "per server CPU-s ratio",
  "load CPU",
  "server CPU",
];

/** Column of the load CPU figure (bench.ts looks for the ⚠ there). */
export const LOAD_COLUMN = 8;

/** The rows of one mode: per metric (and each extra figure), per server. */
export function buildRows(
  mode: Mode,
  results: Map<string, Result>,
  servers: ServerSpec[],
  metrics: Metric[],
): Row[] {
  const rows: Row[] = [];
  const best = (server: string, metric: string) => {
    const samples = results.get(`${server}/${metric}`)?.samples ?? [];
    return samples.reduce<Sample | undefined>(
      (top, sample) => !top || sample.value > top.value ? sample : top,
      undefined,
    );
  };
  // Figure per second of server CPU, the median over rounds: another
  // process stealing the server's CPU lowers its figure in that round, but
  // hardly what it achieves per CPU-second, so this ratio stays steady under
  // noise (it means little where the server idles, as with one connection).
  const efficiency = (server: string, metric: string) => {
    const values = (results.get(`${server}/${metric}`)?.samples ?? [])
      .filter((sample) => (sample.serverCpu ?? 0) > 0.05)
      .map((sample) => sample.value / sample.serverCpu!)
      .sort((a, b) => a - b);
    return values.length ? values[Math.floor(values.length / 2)] : undefined;
  };
  for (const metric of metrics) {
    for (const server of servers) {
      const result = results.get(`${server.id}/${metric.id}`);
      const top = best(server.id, metric.id);
      const reference = server.vs ? best(server.vs, metric.id) : undefined;
      if (!top) {
        rows.push([
          mode.name,
          metric.label,
          `${server.label} [${server.id}]`,
          `failed: ${result?.errors[0] ?? "no run"}`.replaceAll("|", "/"),
          "",
          server.target ? `≥ ${server.target.toFixed(2)} ✘` : "",
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
        ? (Math.max(...values) - Math.min(...values)) / Math.max(...values)
        : undefined;
      const ours = efficiency(server.id, metric.id);
      const theirs = server.vs ? efficiency(server.vs, metric.id) : undefined;
      rows.push([
        mode.name,
        metric.label,
        `${server.label} [${server.id}]`,
        metric.format(top.value),
        ratio === undefined ? "" : `${ratio.toFixed(2)}×`,
        server.target
          ? `≥ ${server.target.toFixed(2)} ${
            ratio !== undefined && ratio >= server.target ? "✔" : "✘"
          }`
          : "",
        spread === undefined ? "" : `${Math.round(spread * 100)}%`,
        ours && theirs ? `${(ours / theirs).toFixed(2)}×` : "",
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

/** A load client this busy may itself have set the pace. */
export const LOAD_BOUND = 0.9;

export function loadBound(sample: Sample): boolean {
  return (sample.loadCpu ?? 0) >= LOAD_BOUND;
}

function percent(fraction: number | undefined): string {
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
