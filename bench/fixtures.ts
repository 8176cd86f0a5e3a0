// What some modes need before their servers start, made fresh in the run's
// scratch directory (never in the repository): TLS certificates, the DNS
// zone (as a zone file for dns_server.ts and as options for dnsmasq), the
// `ws` package for the Node WebSocket room, a Redis server, and the shell
// script of the upload pipeline baseline.
import { makeCertificates } from "../scripts/make_cert.ts";
import {
  type Environment,
  runBounded,
  type ServerSpec,
  startServer,
} from "./harness.ts";

/**
 * Where a run's certificates live: the files makeCertificates() writes (the
 * names its --help gives) into the scratch directory's tls/.
 */
export function certificatePaths(scratch: string) {
  const dir = `${scratch}/tls`;
  return {
    ca: `${dir}/ca.pem`,
    cert: `${dir}/localhost.pem`,
    key: `${dir}/localhost.key`,
  };
}

const certificatesMade = new Map<string, Promise<unknown>>();

/**
 * A private CA and a leaf it signed for localhost, 127.0.0.1 and ::1, by
 * scripts/make_cert.ts's recipe (its header says why two and not one), made
 * once per run for the modes that need them; the leaf lives two days.
 */
export function makeRunCertificates(environment: Environment) {
  const scratch = environment.scratch;
  let made = certificatesMade.get(scratch);
  if (!made) {
    made = makeCertificates({ dir: `${scratch}/tls`, days: 2 });
    certificatesMade.set(scratch, made);
  }
  return made;
}

/** One record of the bench zone (dns_server.ts's zone file format). */
export interface ZoneRecord {
  name: string;
  type: "A" | "AAAA" | "CNAME" | "MX" | "TXT";
  /** MX: "PRIORITY HOST"; TXT: the text. */
  value: string;
}

/** The zone both DNS servers answer. */
export const BENCH_ZONE: ZoneRecord[] = [
  { name: "bench.test", type: "A", value: "127.0.0.1" },
  { name: "bench.test", type: "MX", value: "10 mail.bench.test" },
  { name: "www.bench.test", type: "A", value: "127.0.0.1" },
  { name: "www.bench.test", type: "AAAA", value: "::1" },
  { name: "mail.bench.test", type: "A", value: "127.0.0.2" },
  { name: "alias.bench.test", type: "CNAME", value: "www.bench.test" },
  { name: "txt.bench.test", type: "TXT", value: "hello from the bench" },
];

/** What the load client asks, in turn (each has an answer in the zone). */
export const BENCH_QUERIES = [
  "www.bench.test/A",
  "www.bench.test/AAAA",
  "txt.bench.test/TXT",
  "bench.test/MX",
  "alias.bench.test/A",
].join(",");

export const zonePath = (scratch: string) => `${scratch}/bench.zone`;

/** The zone as dns_server.ts reads it: `NAME TYPE VALUE` per line. */
export function zoneText(records: ZoneRecord[]): string {
  return records.map((record) =>
    `${record.name} ${record.type} ${record.value}\n`
  ).join("");
}

/**
 * dnsmasq answering the same zone: Debian's binary on a loopback port, in
 * the foreground, reading no configuration, hosts file or upstream servers,
 * authoritative for the zone's domains (`--local`: NXDOMAIN for other names
 * in them), the records as options.
 */
export function dnsmasqArgs(records: ZoneRecord[], port: number): string[] {
  const args = [
    "--no-daemon",
    `--port=${port}`,
    "--listen-address=127.0.0.1",
    "--bind-interfaces",
    "--no-resolv",
    "--no-hosts",
    "--conf-file=/dev/null",
    "--pid-file=",
    "--log-facility=-",
  ];
  const domains = new Set<string>();
  for (const record of records) {
    domains.add(record.name.split(".").slice(-2).join("."));
    switch (record.type) {
      case "A":
      case "AAAA":
        args.push(`--host-record=${record.name},${record.value}`);
        break;
      case "CNAME":
        args.push(`--cname=${record.name},${record.value}`);
        break;
      case "MX": {
        const [priority, host] = record.value.split(/\s+/);
        args.push(`--mx-host=${record.name},${host},${priority}`);
        break;
      }
      case "TXT":
        // On dnsmasq's command line a comma always starts a new string
        // (quotes are taken literally), so one string cannot hold one.
        if (record.value.includes(",")) {
          throw new Error(`dnsmasq cannot serve the TXT '${record.value}'`);
        }
        args.push(`--txt-record=${record.name},${record.value}`);
        break;
    }
  }
  for (const domain of domains) args.push(`--local=/${domain}/`);
  return args;
}

export async function writeZone(environment: Environment) {
  await Deno.writeTextFile(
    zonePath(environment.scratch),
    zoneText(BENCH_ZONE),
  );
}

/** Where `npm install ws` puts the package for node_ws_room.mjs. */
export const wsModules = (scratch: string) => `${scratch}/node-ws`;

/**
 * Installs `ws` from the npm registry into the scratch directory (npm's
 * own cache makes later runs quick); returns why not, or undefined.
 */
export async function installWs(
  environment: Environment,
): Promise<string | undefined> {
  const output = await runBounded([
    "npm",
    "install",
    "--prefix",
    wsModules(environment.scratch),
    "--no-save",
    "--no-audit",
    "--no-fund",
    "--loglevel=error",
    "ws@8",
  ], 120_000);
  if (output.code !== 0) {
    return `npm install ws failed: ${
      output.stderr.trim().split("\n").pop() ?? `exit ${output.code}`
    }`;
  }
  return undefined;
}

const redis: ServerSpec = {
  id: "redis",
  label: "redis-server",
  tools: ["redis-server"],
  silent: true,
  command: ({ port }) => [
    "redis-server",
    "--port",
    String(port),
    "--bind",
    "127.0.0.1",
    "--save",
    "",
    "--appendonly",
    "no",
  ],
};

/** The Redis the cross-process chat runs through, for one mode's rounds. */
export let redisPort = 0;

/** Starts redis-server (on the server CPU); returns how to stop it. */
export async function startRedis(
  environment: Environment,
): Promise<() => Promise<void>> {
  const running = await startServer(redis, environment);
  redisPort = running.port;
  return async () => {
    await running.stop();
  };
}

export const receiveScript = (scratch: string) => `${scratch}/receive.sh`;

/**
 * The shell's way of doing the upload server's work, run by socat for one
 * connection: stdin is the upload, stdout goes back to the client. tee
 * writes the file while sha256sum hashes the stream, sync flushes the file
 * to disk, and only then is the hash the answer.
 */
export async function writeReceiveScript(environment: Environment) {
  await Deno.writeTextFile(
    receiveScript(environment.scratch),
    [
      'sum=$(tee "$1" | sha256sum) || exit 1',
      'sync "$1" || exit 1',
      'echo "${sum%% *}"',
      "",
    ].join("\n"),
  );
}
