// Smoke test of the benchmark suite: one tiny run (echo round trips at one
// connection, our server and the bare loop, 0.3 s) must start both servers,
// stop them, and print a table with a figure and a ratio for each.
import assert from "node:assert/strict";

const BENCH = new URL("../bench/bench.ts", import.meta.url).pathname;
const PERMISSIONS = [
  "--allow-net",
  "--allow-run",
  "--allow-read",
  "--allow-write",
  "--allow-env",
  "--allow-sys",
];

async function runBench(args: string[]) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", ...PERMISSIONS, BENCH, ...args],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
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

/** Whether a process with this id exists (ps exits 1 when not). */
async function isRunning(pid: number): Promise<boolean> {
  const { code } = await new Deno.Command("ps", {
    args: ["-p", String(pid)],
    stdout: "null",
    stderr: "null",
  }).output();
  return code === 0;
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
  const rows = result.stdout.split("\n").filter((line) =>
    line.startsWith("| echo ")
  );
  assert.equal(rows.length, 2, result.stdout);
  const [ours, loop] = rows.map((row) =>
    row.split("|").map((cell) => cell.trim())
  );
  assert.equal(ours[3], "echo_server.ts [ours]");
  assert.equal(loop[3], "Deno read/write loop [deno-loop]");
  // A figure (round trips per second) and a ratio for each, the loop 1.00×.
  assert.match(ours[4], /^[\d,]+$/);
  assert.ok(Number(ours[4].replaceAll(",", "")) > 100, ours[4]);
  assert.match(ours[5], /^\d+\.\d\d×$/);
  assert.equal(loop[5], "1.00×");
  assert.match(ours[6], /^≥ 0\.95 [✔✘]$/);
  assert.match(result.stderr, /^Load: /m);
  // Both servers were started, and stopped by their PIDs.
  const pids = [...result.stderr.matchAll(/ started as pid (\d+) /g)].map((
    match,
  ) => Number(match[1]));
  assert.equal(pids.length, 2, result.stderr);
  for (const pid of pids) assert.equal(await isRunning(pid), false);
});

Deno.test("bench: an unknown mode is a usage error: one line, exit 2", async () => {
  const wrong = await runBench(["--mode", "nonsense"]);
  assert.equal(wrong.code, 2);
  assert.match(wrong.stderr, /^bench\.ts: --mode: unknown 'nonsense'/);
  assert.doesNotMatch(wrong.stderr, /at .*\.ts:\d+/);
});
