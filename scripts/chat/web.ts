// The browser side of chat_server.ts --web-port: a small HTTP/1.1 server
// (GET / the page from chat/page.ts, GET /ws the WebSocket) and
// WebSocket framing (RFC 6455) written by hand over the TCP connection, so
// that a browser member is chat_server's own TcpMember with a queue, a
// writer and a reader like any other. Deno.upgradeWebSocket would be
// shorter, but measured with Deno 2.9: its close() waits for a close frame
// that a peer which stopped reading never takes, so such a peer cannot be
// cut off; it assembles a message of up to 64 MiB before we see it; and its
// bufferedAmount counts a burst as queued until the event loop turns. Here
// a message over the line limit is skipped as it streams in, and dropping
// a member closes its socket. Kept out of chat_server.ts's reading budget.
import { receive } from "./commands.ts";
import type { Member, Room } from "./room.ts";
import { PAGE, PAGE_POLICY } from "./page.ts";
import { seconds, withDeadline } from "../../lib/deadline.ts";
import * as http from "../../lib/http1.ts";
import {
  concat,
  lingeringClose,
  type Traffic,
  writeAll,
} from "../../lib/io.ts";
import { BufferedReader } from "../../lib/reader.ts";

const HEAD_MS = 10_000; // for the request line and headers
const LIMIT = 16 * 1024; // bytes of request head
const TOO_BIG = "request head too large";
// RFC 6455 §1.3: the server proves it read the key by hashing it with this
// constant, so that no server but a WebSocket one ever says yes.
const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const PAGE_HEADERS = {
  "content-type": "text/html; charset=utf-8",
  "content-security-policy": PAGE_POLICY,
  "cache-control": "no-cache",
  "referrer-policy": "no-referrer",
};
const OPCODE = { more: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 };

const encoder = new TextEncoder();
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** What the WebSocket needs of chat_server's member. */
export interface SocketMember extends Member {
  readonly traffic: Traffic; // bytes both ways, for the idle timeout
  queue(bytes: Uint8Array): boolean; // bytes as they go on the wire
}

type Answer = [status: string, body: string | Uint8Array, headers?: object];

/**
 * Reads one HTTP request and answers it (the page, an error), or switches
 * the connection to a WebSocket and returns it for the caller to run.
 */
export async function acceptWeb(
  conn: Deno.Conn,
  maxLine: number,
): Promise<WebSocketPeer | undefined> {
  const reader = new BufferedReader(conn, { initialSize: 512 });
  let request;
  try {
    request = await withDeadline(conn, HEAD_MS, async () => {
      const line = await http.readHttpLine(reader, LIMIT, TOO_BIG);
      if (line === null) return; // closed without asking anything
      const fields = await http.readFields(reader, LIMIT, "header", TOO_BIG);
      const [, method, path] = /^([A-Z]+) (\/[^?# ]*)\S* HTTP\/1\.[01]$/
        .exec(http.latin1(line)) ?? [];
      if (!method) throw new http.HttpError("malformed request line");
      return { method, path, fields };
    }, `no request within ${seconds(HEAD_MS)}`);
  } catch (error) {
    if (error instanceof http.HttpError) {
      await respond(conn, ["400 Bad Request", error.message]);
    }
    return; // or it timed out, or left: nobody to answer
  }
  if (!request) return;
  const header = (name: string) =>
    http.headerValues(request.fields, name).join(", ");
  const refusal = check(request.method, request.path, header);
  if (refusal) {
    return void await respond(conn, refusal, request.method === "HEAD");
  }
  // The upgrade handshake: 101 and SHA-1(key + GUID) in base64. From the
  // next byte on, both sides speak frames.
  const digest = await crypto.subtle.digest(
    "SHA-1",
    encoder.encode(header("sec-websocket-key") + GUID),
  );
  const accept = btoa(String.fromCharCode(...new Uint8Array(digest)));
  await writeAll(
    conn,
    encoder.encode(
      "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n" +
        `connection: Upgrade\r\nsec-websocket-accept: ${accept}\r\n\r\n`,
    ),
  );
  return new WebSocketPeer(reader, maxLine + 2); // a message may end in "\r\n"
}

/** The answer to anything but a valid upgrade; undefined for that. */
function check(
  method: string,
  path: string,
  header: (name: string) => string,
): Answer | undefined {
  if (method !== "GET" && method !== "HEAD") {
    return ["405 Method Not Allowed", "GET only", { allow: "GET, HEAD" }];
  }
  if (path === "/") return ["200 OK", PAGE, PAGE_HEADERS];
  if (path !== "/ws") return ["404 Not Found", "no such page; try /"];
  const upgrade = /\bwebsocket\b/i.test(header("upgrade")) &&
    /\bupgrade\b/i.test(header("connection")) && method === "GET";
  if (!upgrade) {
    return ["426 Upgrade Required", "a WebSocket lives here", {
      upgrade: "websocket",
    }];
  }
  if (header("sec-websocket-version") !== "13") {
    return ["426 Upgrade Required", "WebSocket version 13 only", {
      "sec-websocket-version": "13",
    }];
  }
  // Base64 of 16 random bytes.
  if (!/^[A-Za-z0-9+/]{21}[AQgw]==$/.test(header("sec-websocket-key"))) {
    return ["400 Bad Request", "bad Sec-WebSocket-Key"];
  }
  // A browser names the page that opened the socket. WebSocket is not held
  // by the same-origin policy, so a page on another site could join the
  // room in its visitor's name: checking is the server's job.
  // ("null" comes from a file or a sandbox.)
  const origin = header("origin");
  const from = URL.canParse(origin) ? new URL(origin).host : origin;
  if (origin !== "" && from !== header("host").toLowerCase()) {
    return ["403 Forbidden", "pages from other sites may not join"];
  }
}

/** A short HTTP answer, then a close that does not lose it. */
async function respond(conn: Deno.Conn, answer: Answer, headOnly = false) {
  const [status, body, headers] = answer;
  const bytes = typeof body === "string" ? encoder.encode(body + "\n") : body;
  const fields = Object.entries({
    "content-type": "text/plain; charset=utf-8",
    "x-content-type-options": "nosniff",
    ...headers,
    "content-length": bytes.length,
    connection: "close",
  }).map(([name, value]) => `${name}: ${value}\r\n`).join("");
  const head = encoder.encode(`HTTP/1.1 ${status}\r\n${fields}\r\n`);
  const all = headOnly ? head : concat([head, bytes]);
  try {
    await withDeadline(conn, HEAD_MS, () => writeAll(conn, all), "stalled");
    await lingeringClose(conn);
  } catch {
    // It left, or would not read: serveTcp closes it either way.
  }
}

/** One frame, FIN set (server frames are never masked). */
function frame(opcode: number, payload: Uint8Array): Uint8Array {
  const size = payload.length;
  const extra = size < 126 ? 0 : size < 65536 ? 2 : 8;
  const bytes = new Uint8Array(2 + extra + size);
  const view = new DataView(bytes.buffer);
  bytes[0] = 0x80 | opcode;
  bytes[1] = extra === 0 ? size : extra === 2 ? 126 : 127;
  if (extra === 2) view.setUint16(2, size);
  if (extra === 8) view.setBigUint64(2, BigInt(size));
  bytes.set(payload, 2 + extra);
  return bytes;
}

// A broadcast hands the same bytes to every member: frame them once.
let lastLines: Uint8Array | undefined, lastFrames: Uint8Array | undefined;

/**
 * Room bytes ("a: hi\n* b joined\n") as text frames, one message per line
 * without its "\n". The room only ever sends valid UTF-8.
 */
export function textFrames(lines: Uint8Array): Uint8Array {
  if (lines === lastLines) return lastFrames!;
  const frames: Uint8Array[] = [];
  for (let start = 0; start < lines.length;) {
    let end = lines.indexOf(0x0a, start);
    if (end < 0) end = lines.length;
    frames.push(frame(OPCODE.text, lines.subarray(start, end)));
    start = end + 1;
  }
  lastLines = lines;
  return lastFrames = concat(frames);
}

/** A WebSocket after the handshake: frames in, lines to the room. */
export class WebSocketPeer {
  #closing = false; // our close frame is queued: nothing may follow it

  constructor(readonly reader: BufferedReader, readonly limit: number) {}

  /** The close frame that ends a member's output, once. */
  goodbye(code = 1000, reason = ""): Uint8Array | undefined {
    if (this.#closing) return;
    this.#closing = true;
    const text = encoder.encode(reason);
    const payload = new Uint8Array(2 + text.length);
    new DataView(payload.buffer).setUint16(0, code);
    payload.set(text, 2);
    return frame(OPCODE.close, payload);
  }

  /**
   * Reads frames until the peer leaves; each whole text message is one line
   * for the room. Returns why it ended, as chat_server logs it.
   */
  async receive(room: Room, member: SocketMember): Promise<string> {
    let kind: "text" | "binary" | "long" | undefined; // a message under way
    let parts: Uint8Array[] = [], size = 0;
    const fail = (code: number, why: string) => {
      const last = this.goodbye(code, why);
      if (last) member.queue(last);
      return `protocol error: ${why}`;
    };
    while (true) {
      if (!(await this.#need(2))) return "disconnected";
      let at = this.reader.start, bytes = this.reader.bytes;
      const fin = bytes[at] >= 0x80, opcode = bytes[at] & 0x0f;
      const short = bytes[at + 1] & 0x7f;
      const extra = short === 126 ? 2 : short === 127 ? 8 : 0;
      if (bytes[at] & 0x70) return fail(1002, "no extension was agreed");
      if (bytes[at + 1] < 0x80) return fail(1002, "client frames are masked");
      if (!(await this.#need(2 + extra + 4))) return "disconnected";
      [at, bytes] = [this.reader.start, this.reader.bytes];
      const view = new DataView(bytes.buffer, bytes.byteOffset + at + 2);
      const length = extra === 2
        ? view.getUint16(0)
        : extra === 8
        ? Number(view.getBigUint64(0))
        : short;
      const mask = bytes.slice(at + 2 + extra, at + 6 + extra);
      this.reader.consume(6 + extra);
      member.traffic.bytes += 6 + extra + length;
      if (opcode >= 8) { // control frames: short, whole, even mid-message
        if (!fin || length > 125) return fail(1002, "bad control frame");
        const payload = await this.#payload(length, mask);
        if (opcode === OPCODE.close) return "disconnected"; // goodbye answers
        if (opcode === OPCODE.ping) member.queue(frame(OPCODE.pong, payload));
        else if (opcode !== OPCODE.pong) return fail(1002, "unknown opcode");
        continue;
      }
      if (opcode === OPCODE.more ? !kind : kind || opcode > 2) {
        return fail(1002, "unexpected frame");
      }
      if (opcode !== OPCODE.more) {
        kind = opcode === OPCODE.text ? "text" : "binary";
      }
      size += length;
      if (kind === "text" && size > this.limit) [kind, parts] = ["long", []];
      // Only text within the limit is kept; anything else streams past.
      if (kind === "text") parts.push(await this.#payload(length, mask));
      else await this.#skip(length);
      if (!fin) continue;
      const [ended, message] = [kind, concat(parts)];
      [kind, parts, size] = [undefined, [], 0];
      if (ended === "binary") {
        room.tell(member, "binary messages are not accepted; send text");
      } else if (ended === "long") {
        room.refuseLongLine(member);
      } else {
        try {
          utf8.decode(message);
        } catch {
          return fail(1007, "text is not UTF-8"); // RFC 6455 §8.1
        }
        if (!(await receive(room, member, oneLine(message)))) return "quit";
      }
    }
  }

  /** Until `count` bytes are buffered; false if the input ends first. */
  async #need(count: number): Promise<boolean> {
    while (this.reader.buffered < count) {
      if (!(await this.reader.fill(Math.max(count, 1024)))) return false;
    }
    return true;
  }

  async #payload(length: number, mask: Uint8Array): Promise<Uint8Array> {
    if (!(await this.#need(length))) throw new Deno.errors.UnexpectedEof();
    const start = this.reader.start;
    const payload = this.reader.bytes.slice(start, start + length);
    this.reader.consume(length);
    for (let i = 0; i < length; i++) payload[i] ^= mask[i & 3];
    return payload;
  }

  async #skip(length: number) {
    while (length > 0) {
      if (this.reader.buffered === 0 && !(await this.reader.fill())) {
        throw new Deno.errors.UnexpectedEof();
      }
      const count = Math.min(length, this.reader.buffered);
      this.reader.consume(count);
      length -= count;
    }
  }
}

/**
 * A message is one line: a final "\n" or "\r\n" is dropped, and a newline
 * inside becomes U+FFFD, so that one message never poses as two lines.
 */
function oneLine(message: Uint8Array): Uint8Array {
  let end = message.length;
  if (message[end - 1] === 0x0a) end -= message[end - 2] === 0x0d ? 2 : 1;
  const line = message.subarray(0, end);
  if (!line.includes(0x0a)) return line;
  const text = new TextDecoder().decode(line).replaceAll("\n", "\uFFFD");
  return encoder.encode(text);
}
