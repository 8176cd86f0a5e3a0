// The chart of a run: one bar per (mode, metric, our server) showing how
// many times better than its baseline our server did, on a log scale
// around the 1.0× line, with its target marked. It is drawn from the
// table's rows, so the same code charts a live run and a table read back
// from bench/RESULTS.md (`deno task bench --chart`). Plain SVG: no script,
// no fonts or images from elsewhere.
import { HEADER, PER_CPU, type Row } from "./report.ts";

export interface Bar {
  mode: string;
  metric: string;
  server: string;
  /** What the ratio divides by: the baseline's label (or id). */
  baseline?: string;
  /**
   * Times better than the baseline (> 1: better): the ratio, its inverse
   * for a latency, or the per-CPU-second ratio when judged on that.
   */
  value?: number;
  /** The target on the same scale, when there is one. */
  target?: number;
  /** Target met (true), missed (false), or no target or no verdict. */
  met?: boolean;
  /** Judged on server CPU time because both load clients were saturated. */
  perCpu: boolean;
  /** Our server's load client was at its limit. */
  loadBound: boolean;
  /** Why there is no bar. */
  failed?: string;
}

const LOWER = " (lower is better)";

/**
 * Bars for our servers' main figures (not the secondary rows). `header`
 * names the columns (a table written before a column was added still
 * reads).
 */
export function barsFromRows(rows: Row[], header: string[] = HEADER): Bar[] {
  const at = (row: Row, name: string) => {
    const index = header.indexOf(name);
    return index < 0 ? "" : row[index] ?? "";
  };
  /** "label [id]" → label, for a server id in the same mode and metric. */
  const labelOf = (mode: string, metric: string, id: string) => {
    const row = rows.find((other) =>
      other[0] === mode && other[1] === metric &&
      other[2].endsWith(`[${id}]`)
    );
    return row ? row[2].replace(/\s*\[[^\]]*\]$/, "") : id;
  };
  const bars: Bar[] = [];
  for (const row of rows) {
    const [mode, metric, server, figure] = row;
    const targetText = at(row, "target");
    const loadText = at(row, "load CPU");
    if (!/\[ours[^\]]*\]$/.test(server)) continue;
    const failed = figure.startsWith("failed:");
    if (!failed && loadText === "") continue; // a secondary figure
    const lower = metric.endsWith(LOWER);
    const vs = at(row, "vs");
    const bar: Bar = {
      mode,
      metric: lower ? metric.slice(0, -LOWER.length) : metric,
      server: server.replace(/\s*\[[^\]]*\]$/, ""),
      baseline: vs ? labelOf(mode, metric, vs) : undefined,
      perCpu: targetText.endsWith(PER_CPU),
      loadBound: loadText.includes("⚠"),
    };
    const target = /^([≥≤]) ([\d.]+)/.exec(targetText);
    if (target) {
      bar.target = target[1] === "≤"
        ? 1 / Number(target[2])
        : Number(target[2]);
      if (targetText.includes("✔")) bar.met = true;
      if (targetText.includes("✘")) bar.met = false;
    }
    const ratio = parseFloat(
      at(row, bar.perCpu ? "per server CPU-s ratio" : "ratio"),
    );
    if (failed) bar.failed = figure;
    else if (!(ratio > 0)) bar.failed = "no baseline figure";
    else bar.value = lower ? 1 / ratio : ratio;
    bars.push(bar);
  }
  return bars;
}

/** The header and rows of the Markdown table in `markdown`. */
export function parseTable(
  markdown: string,
): { header: string[]; rows: Row[] } {
  let header: string[] = [];
  const rows: Row[] = [];
  for (const line of markdown.split("\n")) {
    if (!line.startsWith("| ") || /^\|\s*-/.test(line)) continue;
    // Split on "|" not escaped as "\|", then unescape.
    const cells = line.slice(1, line.lastIndexOf("|")).split(/(?<!\\)\|/)
      .map((cell) => cell.trim().replaceAll("\\|", "|"));
    if (cells[0] === "mode") header = cells;
    else rows.push(cells);
  }
  return { header, rows };
}

const escape = (text: string) =>
  text.replaceAll("&", "&amp;").replaceAll("<", "&lt;")
    .replaceAll(">", "&gt;").replaceAll('"', "&quot;");

// Layout, in SVG units (pixels at 100%).
const WIDTH = 920;
const LABELS = 400; // right edge of the label column
const PLOT_LEFT = 410;
const PLOT_RIGHT = 860;
const ROW = 32;
const TOP = 78;
const BAR = 14;
const SCALE = [0.25, 0.5, 1, 2, 4, 8];
const LOW = Math.log2(SCALE[0]);
const HIGH = Math.log2(SCALE[SCALE.length - 1]);

/** x of a value on the log scale (clamped to the axis). */
function x(value: number): number {
  const log = Math.min(HIGH, Math.max(LOW, Math.log2(value)));
  return PLOT_LEFT + (log - LOW) / (HIGH - LOW) * (PLOT_RIGHT - PLOT_LEFT);
}

const COLOURS = {
  met: "#2e7d32",
  missed: "#c62828",
  none: "#78909c",
  target: "#ef6c00",
  band: "#f3f5f7",
};

/** The chart as a standalone SVG document. */
export function renderChart(bars: Bar[], subtitle: string): string {
  const height = TOP + bars.length * ROW + 70;
  const out: string[] = [];
  const f = (value: number) => value.toFixed(1);
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="12">`,
    `<title>Our servers against their baselines</title>`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="20" y="26" font-size="16" font-weight="bold">Our servers against their baselines: times better (right of 1.0×) or worse</text>`,
    `<text x="20" y="46" fill="#555555">${escape(subtitle)}</text>`,
  );
  // A light band behind every other mode's rows, to group them.
  const bottom = TOP + bars.length * ROW;
  let shaded = false;
  bars.forEach((bar, index) => {
    if (index > 0 && bar.mode !== bars[index - 1].mode) shaded = !shaded;
    if (shaded) {
      out.push(
        `<rect x="10" y="${TOP + index * ROW}" width="${
          WIDTH - 20
        }" height="${ROW}" fill="${COLOURS.band}"/>`,
      );
    }
  });
  // The axis: grid lines and their labels, the 1.0× line stronger.
  for (const tick of SCALE) {
    const at = f(x(tick));
    const baseline = tick === 1;
    out.push(
      `<line class="${baseline ? "baseline" : "grid"}" x1="${at}" y1="${
        TOP - 8
      }" x2="${at}" y2="${bottom}" stroke="${
        baseline ? "#000000" : "#dddddd"
      }" stroke-width="${baseline ? 2 : 1}"/>`,
      `<text x="${at}" y="${
        TOP - 14
      }" text-anchor="middle" fill="#555555">${tick}×</text>`,
    );
  }
  bars.forEach((bar, index) => {
    const y = TOP + index * ROW;
    const middle = y + ROW / 2;
    const colour = bar.met === true
      ? COLOURS.met
      : bar.met === false
      ? COLOURS.missed
      : COLOURS.none;
    const attributes = [
      `class="bar"`,
      `data-mode="${escape(bar.mode)}"`,
      `data-metric="${escape(bar.metric)}"`,
      `data-server="${escape(bar.server)}"`,
      bar.baseline ? `data-baseline="${escape(bar.baseline)}"` : "",
      bar.value === undefined ? "" : `data-value="${bar.value.toFixed(2)}"`,
      bar.target === undefined ? "" : `data-target="${bar.target.toFixed(2)}"`,
      bar.met === undefined ? "" : `data-met="${bar.met ? "yes" : "no"}"`,
    ].filter(Boolean).join(" ");
    out.push(
      `<g ${attributes}>`,
      `<text x="${LABELS}" y="${f(middle - 3)}" text-anchor="end">${
        escape(`${bar.mode} · ${bar.metric}`)
      }</text>`,
      `<text x="${LABELS}" y="${
        f(middle + 10)
      }" text-anchor="end" font-size="10" fill="#555555">${
        escape(bar.baseline ? `${bar.server} ÷ ${bar.baseline}` : bar.server)
      }</text>`,
    );
    if (bar.value === undefined) {
      out.push(
        `<text x="${f(x(1) + 6)}" y="${
          f(middle + 4)
        }" fill="${COLOURS.missed}">${
          escape(bar.failed ?? "no figure")
        }</text>`,
      );
    } else {
      const from = Math.min(x(1), x(bar.value));
      const width = Math.max(1, Math.abs(x(bar.value) - x(1)));
      const notes = [
        bar.perCpu ? ` ${PER_CPU}` : "",
        bar.loadBound ? " ⚠ load-bound" : "",
        bar.target === undefined
          ? ""
          : ` (target ${bar.target.toFixed(2)}× ${
            bar.met ? "met" : bar.met === false ? "missed" : "?"
          })`,
      ].join("");
      const label = escape(`${bar.value.toFixed(2)}×${notes}`);
      // Right of the bar (or of the 1.0× line); inside a long bar, in
      // white, when it would run off the chart (about 6.5 px a character).
      const after = Math.max(x(bar.value), x(1)) + 6;
      const inside = after + label.length * 6.5 > WIDTH - 10 &&
        bar.value > 1;
      out.push(
        `<rect x="${f(from)}" y="${f(middle - BAR / 2)}" width="${
          f(width)
        }" height="${BAR}" fill="${colour}"/>`,
        inside
          ? `<text x="${f(x(bar.value) - 6)}" y="${
            f(middle + 4)
          }" text-anchor="end" fill="#ffffff">${label}</text>`
          : `<text x="${f(after)}" y="${f(middle + 4)}">${label}</text>`,
      );
    }
    if (bar.target !== undefined) {
      // An orange tick with a small triangle above it: visible even where
      // the target is the 1.0× line itself.
      const at = x(bar.target);
      const top = middle - BAR / 2 - 3;
      out.push(
        `<g class="target"><title>target ${
          bar.target.toFixed(2)
        }×</title><line x1="${f(at)}" y1="${f(top)}" x2="${f(at)}" y2="${
          f(middle + BAR / 2 + 3)
        }" stroke="${COLOURS.target}" stroke-width="2"/><path d="M${
          f(at - 4)
        } ${f(top - 5)} L${f(at + 4)} ${f(top - 5)} L${f(at)} ${
          f(top)
        } Z" fill="${COLOURS.target}"/></g>`,
      );
    }
    out.push(`</g>`);
  });
  // The legend.
  const legend = bottom + 28;
  const entries: [string, string][] = [
    [COLOURS.met, "target met"],
    [COLOURS.missed, "target missed"],
    [COLOURS.none, "no target"],
  ];
  entries.forEach(([colour, text], index) => {
    const left = 20 + index * 130;
    out.push(
      `<rect x="${left}" y="${
        legend - 10
      }" width="12" height="12" fill="${colour}"/>`,
      `<text x="${left + 18}" y="${legend}">${text}</text>`,
    );
  });
  out.push(
    `<line x1="420" y1="${legend - 8}" x2="420" y2="${
      legend + 3
    }" stroke="${COLOURS.target}" stroke-width="2"/>`,
    `<path d="M416 ${legend - 13} L424 ${legend - 13} L420 ${
      legend - 8
    } Z" fill="${COLOURS.target}"/>`,
    `<text x="428" y="${legend}">target</text>`,
    `<text x="20" y="${
      legend + 22
    }" fill="#555555">Log scale. Latencies are shown inverted (baseline ÷ ours). ⚠: the load client was saturated; ${PER_CPU}: judged on server CPU time per operation.</text>`,
    `</svg>`,
  );
  return out.join("\n") + "\n";
}
