// WebSocket frames (RFC 6455), written by hand over the member's TCP
// connection once web.ts has switched it: the room's lines leave as text
// frames, and each text message that arrives is one line for the room.
// Part of the chat chapter (chat_server.ts runs a browser member through
// WebSocketPeer.receive), in a file of its own to keep chat_server.ts
// within its reading budget. Why by hand: with frames of our own a browser
// member is chat_server's TcpMember, with a queue, a writer and a reader
// like any other. Deno.upgradeWebSocket would be shorter, but measured with
// Deno 2.9: its close() waits for a close frame that a peer which stopped
// reading never takes, so such a peer cannot be cut off; it assembles a
// message of up to 64 MiB before we see it; and its bufferedAmount counts a
// burst as queued until the event loop turns. Here a message over the line
// limit is skipped as it streams in, and dropping a member closes its
// socket. A protocol error ends the connection with close code 1002; text
// that is not UTF-8, with 1007.
//
// Read first: WebSocketPeer.receive, then textFrames.
import { concat, type Traffic } from "../../lib/io.ts";
import type { BufferedReader } from "../../lib/reader.ts";
import { receive } from "./commands.ts";
import type { Member, Room } from "./room.ts";

const OPCODE = { more: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 };

const encoder = new TextEncoder();
const utf8 = new TextDecoder("utf-8", { fatal: true });

/** What the WebSocket needs of chat_server's member. */
export interface SocketMember extends Member {
  readonly traffic: Traffic; // bytes both ways, for the idle timeout
  queue(bytes: Uint8Array): boolean; // bytes as they go on the wire
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
      // A browser masks every frame with a fresh random key (§10.3), so that
      // a page cannot choose the bytes a proxy on the way would see.
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
  const text = utf8.decode(line).replaceAll("\n", "\uFFFD"); // valid: checked
  return encoder.encode(text);
}
