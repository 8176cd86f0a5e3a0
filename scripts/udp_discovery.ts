/**
 * Presence on a LAN over UDP multicast: announces NAME every --interval
 * seconds; prints `+ NAME HOST` when another copy appears and `- NAME` when
 * it says BYE or misses three of its announcements.
 *
 * Run:    deno run --unstable-net --allow-net scripts/udp_discovery.ts alice
 * Try it: the same with bob in a second terminal, or fake a peer:
 *   printf 'DISCOVERY/1 HELLO 0123456789abcdef 1000 nc' | nc -u -w1 -s 127.0.0.1 239.255.42.99 4242
 *
 * Datagram (at most 256 bytes): `DISCOVERY/1 HELLO|BYE ID MS NAME`. ID: 16
 * hex digits drawn per run (we skip our own; a restart is a new peer); MS:
 * the sender's interval, 50-60000, so each peer expires at its own pace;
 * NAME: the rest, UTF-8 without U+FFFD. Anything else is ignored, as are new
 * peers once 256 are known. Names print with controls and bidi/format
 * characters escaped (\x1b, \u{202e}): no peer can drive our terminal.
 *
 * 001 §2 says UDP carries unicast, broadcast and multicast; the tutorials
 * show only unicast. Receivers join a group on one interface; the sender
 * binds --interface's address, which picks the interface datagrams leave by
 * (else the default route's). --broadcast uses that subnet's broadcast
 * address (127.255.255.255 on loopback; others need
 * --allow-sys=networkInterfaces), never 255.255.255.255. IPv4 only. Not a
 * server, so no Listening line; SIGINT/SIGTERM send BYE and exit 0.
 * Read first: startDiscovery.
 */
import { Failure, parseCommandLine, parsePort } from "../lib/cli.ts";
import { parseSeconds, requireUnstableNet } from "../lib/cli.ts";
import { runCommand, UsageError } from "../lib/cli.ts";
import { describeError } from "../lib/errors.ts";
import { Sweeper, type Timed } from "../lib/deadline.ts";
import { closeQuietly, formatHostPort } from "../lib/io.ts";
import { rateLimitedLog, STOP_SIGNALS } from "../lib/server.ts";
import { printable } from "../lib/terminal.ts";

export const DEFAULT_PORT = 4242;
export const DEFAULT_GROUP = "239.255.42.99";
const MAX_DATAGRAM = 256;
const MAX_PEERS = 256;
const FORMAT = /^DISCOVERY\/1 (HELLO|BYE) ([0-9a-f]{16}) ([1-9]\d{1,4}) (.+)$/s;

const USAGE = `Usage: udp_discovery.ts [options] NAME

Announces NAME over UDP multicast; prints "+ NAME HOST" and "- NAME" lines.

Options:
  --group ADDR         multicast group (default ${DEFAULT_GROUP})
  --port PORT          UDP port (default ${DEFAULT_PORT})
  --interface ADDR     this machine's IPv4 address to use (default 127.0.0.1)
  --broadcast          use that interface's subnet broadcast address instead
  --interval SECONDS   between announcements (default 1)
  -h, --help           show this help`;

export interface DiscoveryOptions {
  name: string;
  group?: string;
  port?: number;
  /** This machine's IPv4 address to send from and join the group on. */
  interface?: string;
  /** Send to that interface's subnet broadcast address, not to the group. */
  broadcast?: boolean;
  interval?: number; // seconds between announcements (default 1)
  print?: (line: string) => void; // gets each + and - line (default: stdout)
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** A datagram's [kind, id, interval, name]; undefined if it is not one. */
function parseDatagram(data: Uint8Array): string[] | undefined {
  // Bytes that are not UTF-8 decode to U+FFFD: refused with it.
  const text = data.length <= MAX_DATAGRAM ? decoder.decode(data) : "\uFFFD";
  const fields = text.includes("\uFFFD") ? undefined : FORMAT.exec(text);
  const ms = Number(fields?.[3]);
  return ms >= 50 && ms <= 60_000 ? fields!.slice(1) : undefined;
}

export async function startDiscovery(options: DiscoveryOptions) {
  requireUnstableNet();
  const { name, group = DEFAULT_GROUP, port = DEFAULT_PORT } = options;
  const local = options.interface ?? "127.0.0.1";
  const intervalMs = Math.round((options.interval ?? 1) * 1000);
  const print = options.print ?? ((line: string) => console.log(line));
  if (name === "" || encoder.encode(name).length > 64) { // fits in 256
    throw new UsageError("NAME must be 1 to 64 bytes of UTF-8");
  }
  if ((ipv4(group) ?? 0) >>> 28 !== 0xe) { // 224.0.0.0/4
    throw new UsageError("--group must be an IPv4 multicast address");
  }
  if (!ipv4(local) || ipv4(local)! >>> 28 >= 0xe) {
    throw new UsageError("--interface must be an IPv4 address of this host");
  }
  if (!(intervalMs >= 50 && intervalMs <= 60_000)) {
    throw new UsageError("--interval must be from 0.05 to 60 seconds");
  }
  const id = crypto.randomUUID().replaceAll("-", "").slice(0, 16);
  const datagram = (kind: string) =>
    encoder.encode(`DISCOVERY/1 ${kind} ${id} ${intervalMs} ${name}`);
  const target = options.broadcast ? subnetBroadcast(local) : group;

  // Two sockets. The sender binds our address, which makes the kernel send
  // through the interface that owns it, and asks for its multicast to loop
  // back to other copies on this machine. The receiver binds the wildcard
  // address, because group and broadcast datagrams are addressed to those
  // addresses, not to ours; reuseAddress lets copies share the port.
  const udp = (hostname: string, port: number, extra: object) =>
    Deno.listenDatagram({ transport: "udp", hostname, port, ...extra });
  const sockets: Deno.DatagramConn[] = [];
  try {
    sockets.push(udp(local, 0, { loopback: true }));
    sockets.push(udp("0.0.0.0", port, { reuseAddress: true }));
    if (!options.broadcast) await sockets[1].joinMulticastV4(group, local);
  } catch (error) {
    sockets.forEach(closeQuietly);
    throw error;
  }
  const [sender, receiver] = sockets;

  let closed = false;
  const log = rateLimitedLog(); // a send that fails each second: one line
  const announce = (bytes: Uint8Array) =>
    sender.send(bytes, { transport: "udp", hostname: target, port })
      .catch((error) => {
        if (!closed) log(`send to ${target} failed: ${describeError(error)}`);
      });
  const hello = datagram("HELLO");
  announce(hello);
  const ticker = setInterval(() => announce(hello), intervalMs);

  // The peers we know, by id. Each has a deadline, three of its intervals
  // away and moved on by each HELLO; one timer (lib/deadline.ts) checks
  // them often enough that "-" comes soon after the third silent interval.
  const sweeper = new Sweeper(100);
  const peers = new Map<string, { name: string; deadline: Timed }>();
  const gone = (peerId: string) => {
    const { name, deadline } = peers.get(peerId)!;
    sweeper.remove(deadline);
    peers.delete(peerId);
    print(`- ${printable(name)}`);
  };

  function heard([kind, peerId, ms, name]: string[], host: string) {
    if (peerId === id) return; // our own, looped back
    const known = peers.get(peerId);
    if (known && (kind === "BYE" || known.name !== name)) gone(peerId);
    if (kind === "BYE") return;
    const peer = peers.get(peerId);
    if (peer) peer.deadline.at = Date.now() + 3 * Number(ms);
    else if (peers.size < MAX_PEERS) { // else a flood of fakes: ignore it
      const deadline = sweeper.add(3 * Number(ms), () => gone(peerId));
      peers.set(peerId, { name, deadline });
      print(`+ ${printable(name)} ${host}`);
    }
  }

  async function listen() {
    // One byte more than the largest valid datagram: the kernel cuts a
    // longer one to fit, so a full buffer means "too long".
    const buffer = new Uint8Array(MAX_DATAGRAM + 1);
    while (true) {
      const received = await receiver.receive(buffer).catch((error) => {
        if (!closed) throw error; // else close() ended the loop this way
      });
      if (!received) return;
      const fields = parseDatagram(received[0]);
      if (fields) heard(fields, (received[1] as Deno.NetAddr).hostname);
    }
  }
  const finished = listen();

  let closing: Promise<void> | undefined;
  const close = () =>
    closing ??= (async () => {
      clearInterval(ticker);
      await announce(datagram("BYE")); // peers print "-" now, not later
      closed = true;
      sockets.forEach(closeQuietly);
      await finished; // nothing is heard after this: stop the deadlines
      for (const { deadline } of peers.values()) sweeper.remove(deadline);
    })();
  const to = formatHostPort(target, port);
  return { id, to, finished, close, [Symbol.asyncDispose]: close };
}

/** A dotted IPv4 address as a 32-bit number, or undefined. */
function ipv4(text: string): number | undefined {
  const bytes = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text)
    ?.slice(1).map(Number);
  if (!bytes || bytes.some((byte) => byte > 255)) return undefined;
  return bytes.reduce((value, byte) => value * 256 + byte, 0);
}

/** The subnet broadcast address of one of this machine's IPv4 addresses. */
export function subnetBroadcast(address: string): string {
  if (address.startsWith("127.")) return "127.255.255.255"; // loopback: /8
  const entry = Deno.networkInterfaces().find((candidate) =>
    candidate.family === "IPv4" && candidate.address === address
  );
  if (!entry) throw new Failure(`${address} is not an address of this machine`);
  const hostBits = 32 - Number(entry.cidr.split("/")[1]);
  if (hostBits < 2) throw new Failure(`${entry.cidr} has no broadcast address`);
  const all = (ipv4(address)! | (2 ** hostBits - 1)) >>> 0; // host part all 1s
  return [24, 16, 8, 0].map((shift) => (all >>> shift) & 255).join(".");
}

if (import.meta.main) {
  await runCommand("udp_discovery.ts", async () => {
    const { values, positionals } = parseCommandLine(Deno.args, {
      usage: USAGE,
      positionals: true,
      options: {
        group: { type: "string", default: DEFAULT_GROUP },
        port: { type: "string", default: String(DEFAULT_PORT) },
        interface: { type: "string", default: "127.0.0.1" },
        broadcast: { type: "boolean", default: false },
        interval: { type: "string", default: "1" },
      },
    });
    const [name, ...more] = positionals;
    if (!name || more.length > 0) throw new UsageError("give one NAME");
    const discovery = await startDiscovery({
      name,
      group: values.group,
      port: parsePort(values.port),
      interface: values.interface,
      broadcast: values.broadcast,
      interval: parseSeconds(values.interval, "--interval"),
    });
    console.error(`announcing ${printable(name)} to ${discovery.to}`);
    // Not a server, so no Listening line; a signal ends it, with a BYE.
    const done = Promise.withResolvers<void>();
    for (const signal of STOP_SIGNALS) {
      Deno.addSignalListener(signal, done.resolve);
    }
    await Promise.race([done.promise, discovery.finished]);
    setTimeout(() => Deno.exit(0), 2000); // in case close() is stuck
    await discovery.close();
    return 0; // exit now: the signal listeners would keep us alive
  });
}
