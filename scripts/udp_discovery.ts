/**
 * Presence on a LAN over UDP multicast: announces NAME every --interval
 * seconds and prints `+ NAME HOST` when another copy appears, `- NAME` when
 * it says goodbye or has been silent for three of its intervals.
 *
 * Run:    deno run --unstable-net --allow-net scripts/udp_discovery.ts alice
 * Try it: the same with bob in a second terminal; or fake a peer with
 *   printf 'DISCOVERY/1 HELLO 0123456789abcdef 1000 nc' | nc -u -w1 -s 127.0.0.1 239.255.42.99 4242
 *
 * Datagram, UTF-8, at most 256 bytes: `DISCOVERY/1 HELLO|BYE ID MS NAME`.
 * ID is 16 hex digits drawn at random per run (so we skip our own and a
 * restart counts as new), MS the sender's interval (50-60000), so each peer
 * expires at its own pace, NAME the rest. Anything else is ignored, as is a
 * new peer once 256 are known; names print with control and bidi/format
 * characters escaped (\x1b, \u{202e}), so no peer can drive our terminal.
 *
 * 001 §2 says UDP carries unicast, broadcast and multicast; the tutorials
 * show only unicast. Receivers join a group address on one interface; the
 * sender binds --interface's address, which picks the interface datagrams
 * leave by (else: the default route's). --broadcast sends to that subnet's
 * broadcast address (127.255.255.255 on loopback; other addresses need
 * --allow-sys=networkInterfaces for the netmask), never 255.255.255.255.
 * IPv4 only. Not a server: no Listening line; SIGINT/SIGTERM say BYE, exit 0.
 *
 * Read first: startDiscovery.
 */
import {
  Failure,
  parseCommandLine,
  parsePort,
  parseSeconds,
  runCommand,
  UsageError,
} from "../lib/cli.ts";
import { closeQuietly } from "../lib/net.ts";

export const DEFAULT_PORT = 4242;
export const DEFAULT_GROUP = "239.255.42.99";
const MAX_DATAGRAM = 256;
const MAX_NAME_BYTES = 64;
const MAX_PEERS = 256;
const FORMAT = /^DISCOVERY\/1 (HELLO|BYE) ([0-9a-f]{16}) ([1-9]\d{1,4}) (.+)$/s;

const USAGE = `Usage: udp_discovery.ts [options] NAME

Announces NAME on a UDP multicast group; prints "+ NAME HOST" when another
copy appears and "- NAME" when it goes.

Options:
  --group ADDR         multicast group (default ${DEFAULT_GROUP})
  --port PORT          UDP port (default ${DEFAULT_PORT})
  --interface ADDR     this machine's IPv4 address to use (default 127.0.0.1;
                       a LAN address to be seen on the LAN)
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
  /** Seconds between announcements (default 1). */
  interval?: number;
  /** Gets each "+ NAME HOST" and "- NAME" line (default: stdout). */
  print?: (line: string) => void;
}

const encoder = new TextEncoder();
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** A datagram's [kind, id, interval, name]; undefined if it is not one. */
function parseDatagram(data: Uint8Array): string[] | undefined {
  if (data.length > MAX_DATAGRAM) return undefined;
  let text;
  try {
    text = utf8.decode(data);
  } catch {
    return undefined; // not UTF-8
  }
  const fields = FORMAT.exec(text)?.slice(1);
  const ms = Number(fields?.[2]);
  return ms >= 50 && ms <= 60_000 ? fields : undefined;
}

export async function startDiscovery(options: DiscoveryOptions) {
  if (typeof Deno.listenDatagram !== "function") {
    throw new Failure("UDP needs Deno's --unstable-net flag");
  }
  const group = options.group ?? DEFAULT_GROUP;
  const local = options.interface ?? "127.0.0.1";
  const nameBytes = encoder.encode(options.name).length;
  if (nameBytes === 0 || nameBytes > MAX_NAME_BYTES) {
    throw new UsageError(`NAME must be 1 to ${MAX_NAME_BYTES} bytes of UTF-8`);
  }
  if ((ipv4(group) ?? 0) >>> 28 !== 0xe) { // 224.0.0.0/4
    throw new UsageError("--group must be an IPv4 multicast address");
  }
  if (!ipv4(local) || ipv4(local)! >>> 28 >= 0xe) {
    throw new UsageError("--interface must be an IPv4 address of this host");
  }
  const intervalMs = Math.round((options.interval ?? 1) * 1000);
  if (!(intervalMs >= 50 && intervalMs <= 60_000)) {
    throw new UsageError("--interval must be from 0.05 to 60 seconds");
  }
  const port = options.port ?? DEFAULT_PORT;
  const print = options.print ?? ((line: string) => console.log(line));
  const id = crypto.randomUUID().replaceAll("-", "").slice(0, 16);
  const to = {
    transport: "udp",
    hostname: options.broadcast ? subnetBroadcast(local) : group,
    port,
  } as const;

  // Two sockets. The sender binds our address, which makes the kernel send
  // through the interface that owns it, and asks for its multicast to loop
  // back to other copies on this machine. The receiver binds the wildcard
  // address, because group and broadcast datagrams are addressed to those
  // addresses, not to ours; reuseAddress lets copies share the port.
  const sockets: Deno.DatagramConn[] = [];
  try {
    sockets.push(Deno.listenDatagram({
      transport: "udp",
      hostname: local,
      port: 0,
      loopback: true,
    }));
    sockets.push(Deno.listenDatagram({
      transport: "udp",
      hostname: "0.0.0.0",
      port,
      reuseAddress: true,
    }));
    if (!options.broadcast) await sockets[1].joinMulticastV4(group, local);
  } catch (error) {
    sockets.forEach(closeQuietly);
    throw error;
  }
  const [sender, receiver] = sockets;

  const datagram = (kind: string) =>
    encoder.encode(`DISCOVERY/1 ${kind} ${id} ${intervalMs} ${options.name}`);
  let closed = false;
  const announce = (bytes: Uint8Array) =>
    sender.send(bytes, to).catch((error) => {
      if (!closed) console.error(`send to ${to.hostname} failed: ${error}`);
    });
  const hello = datagram("HELLO");
  announce(hello);
  const ticker = setInterval(() => announce(hello), intervalMs);

  // The peers we know, by id. Silent ones expire, checked a few times an
  // interval, so "-" comes soon after the third missed announcement.
  const peers = new Map<string, { name: string; expires: number }>();
  const gone = (peerId: string) => {
    print(`- ${terminalSafe(peers.get(peerId)!.name)}`);
    peers.delete(peerId);
  };
  const sweep = setInterval(() => {
    const now = performance.now();
    for (const [peerId, peer] of peers) if (now > peer.expires) gone(peerId);
  }, Math.min(intervalMs, 250));

  function heard([kind, peerId, ms, name]: string[], host: string) {
    if (peerId === id) return; // our own, looped back
    const known = peers.get(peerId);
    if (known && (kind === "BYE" || known.name !== name)) gone(peerId);
    if (kind === "BYE") return;
    const expires = performance.now() + 3 * Number(ms);
    const peer = peers.get(peerId);
    if (peer) peer.expires = expires;
    else if (peers.size < MAX_PEERS) { // else a flood of fakes: ignore it
      peers.set(peerId, { name, expires });
      print(`+ ${terminalSafe(name)} ${host}`);
    }
  }

  async function listen() {
    // One byte more than the largest valid datagram: the kernel cuts a
    // longer one to fit, so a full buffer means "too long".
    const buffer = new Uint8Array(MAX_DATAGRAM + 1);
    while (true) {
      let data: Uint8Array, from: Deno.Addr;
      try {
        [data, from] = await receiver.receive(buffer);
      } catch (error) {
        if (closed) return;
        console.error(`receive failed: ${error}`); // ICMP error of a send
        continue;
      }
      const fields = parseDatagram(data);
      if (fields) heard(fields, (from as Deno.NetAddr).hostname);
    }
  }
  const listening = listen();

  let closing: Promise<void> | undefined;
  const close = () =>
    closing ??= (async () => {
      clearInterval(ticker);
      clearInterval(sweep);
      await announce(datagram("BYE")); // peers print "-" now, not later
      closed = true;
      sockets.forEach(closeQuietly);
      await listening;
    })();
  return { id, finished: listening, close, [Symbol.asyncDispose]: close };
}

/** Text with control, bidi and other invisible format characters escaped. */
export function terminalSafe(text: string): string {
  return text.replace(/[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\\]/gu, (char) => {
    const code = char.codePointAt(0)!;
    if (char === "\\") return "\\\\";
    if (code < 0x100) return `\\x${code.toString(16).padStart(2, "0")}`;
    return `\\u{${code.toString(16)}}`;
  });
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
    if (positionals.length !== 1) throw new UsageError("give one NAME");
    const discovery = await startDiscovery({
      name: positionals[0],
      group: values.group,
      port: parsePort(values.port),
      interface: values.interface,
      broadcast: values.broadcast,
      interval: parseSeconds(values.interval, "--interval"),
    });
    const to = values.broadcast
      ? subnetBroadcast(values.interface)
      : values.group;
    console.error(
      `announcing ${
        terminalSafe(positionals[0])
      } from ${values.interface} to ${to} every ${values.interval} s`,
    );
    // Not a server, so no Listening line; a signal ends it, with a BYE.
    const signals: Deno.Signal[] = ["SIGINT", "SIGTERM"];
    const stop = Promise.withResolvers<void>();
    for (const signal of signals) Deno.addSignalListener(signal, stop.resolve);
    await Promise.race([stop.promise, discovery.finished]);
    for (const signal of signals) {
      Deno.removeSignalListener(signal, stop.resolve);
    }
    Deno.unrefTimer(setTimeout(() => Deno.exit(0), 2000)); // close is stuck
    await discovery.close();
  });
}
