// What a chat member's lines do: a plain line goes to the rest of the room
// as "name: line", a line starting with "/" is a command (/nick, /who,
// /msg, /quit, /help). Part of the chat chapter: chat_server.ts (TCP
// members) and web.ts (WebSocket members) hand each member's complete lines
// to receive(); room.ts holds who is in the room and how bytes reach them.
// A file of its own to keep chat_server.ts within its reading budget. When
// the room spans servers (redis.ts), /nick, /who and /msg ask the others,
// and the member's next lines wait for that bounded answer.
//
// Read first: receive.
import { concat } from "../../lib/io.ts";
import { replaceControls } from "../../lib/terminal.ts";
import type { Member, Room } from "./room.ts";

export const MAX_NAME_LENGTH = 24; // characters
export const HINT = "/help lists commands";
const HELP =
  "commands: /nick NAME (change your name), /who (list the room), /msg NAME text (to NAME only), /quit (leave), /help";
const MAX_NAMES_LISTED = 100; // /who's reply stays small

const encoder = new TextEncoder();
const decoder = new TextDecoder(); // not fatal: bad UTF-8 becomes U+FFFD
const NEWLINE = encoder.encode("\n");

/**
 * Runs complete lines from `member` (each ending in "\n" or "\r\n"; the
 * last may lack it at the end of the input). Plain lines are gathered
 * into one buffer and broadcast once: a read that brought ten lines costs
 * each member one queue push, not ten. A command first sends what was
 * gathered before it; one that must ask the other servers makes the rest
 * wait for its answer (a promise). False when the member quits.
 */
export function receive(
  room: Room,
  member: Member,
  bytes: Uint8Array,
  from = 0,
): boolean | Promise<boolean> {
  let prefix = encoder.encode(`${member.name}: `);
  let gathered: Uint8Array[] = [];
  for (let start = from; start < bytes.length;) {
    let end = bytes.indexOf(0x0a, start);
    if (end < 0) end = bytes.length;
    let line = bytes.subarray(start, bytes[end - 1] === 0x0d ? end - 1 : end);
    start = end + 1;
    if (line.length > room.options.maxLine) {
      room.refuseLongLine(member);
    } else if (line[0] === 0x2f) { // "/"
      if (gathered.length > 0) room.broadcast(concat(gathered), member);
      gathered = [];
      const text = replaceControls(decoder.decode(line));
      const staying = command(room, member, text);
      if (staying instanceof Promise) {
        const rest = start; // the lines after the command wait for it
        return staying.then((stays) =>
          stays && room.members.has(member) &&
          receive(room, member, bytes, rest)
        );
      }
      if (!staying) return false;
      prefix = encoder.encode(`${member.name}: `); // after a /nick
    } else if (line.length > 0) {
      if (!isPlainText(line)) {
        // Decoding repairs bad UTF-8; escape sequences must not reach the
        // other members' terminals; a blank line is not worth sending.
        const text = replaceControls(decoder.decode(line));
        if (text.trim() === "") continue;
        line = encoder.encode(text);
      }
      gathered.push(prefix, line, NEWLINE);
    }
  }
  if (gathered.length > 0) room.broadcast(concat(gathered), member);
  return true;
}

/** Printable ASCII (tabs too) not starting blank: relayed as it is. */
function isPlainText(line: Uint8Array): boolean {
  if (line[0] <= 0x20) return false;
  for (let i = 0; i < line.length; i++) {
    if (line[i] > 0x7e || (line[i] < 0x20 && line[i] !== 0x09)) return false;
  }
  return true;
}

/** Runs one command line; false when the member quits. */
function command(
  room: Room,
  member: Member,
  text: string,
): boolean | Promise<boolean> {
  const [, command, argument] = /^(\S*)\s*(.*)$/s.exec(text)!;
  switch (command.toLowerCase()) {
    case "/nick": {
      const renaming = nick(room, member, argument.trim().normalize("NFC"));
      return renaming ? renaming.then(() => true) : true;
    }
    case "/who":
      return who(room, member);
    case "/msg":
      return sendPrivately(room, member, argument);
    case "/help":
      room.tell(member, HELP);
      break;
    case "/quit":
      room.tell(member, `bye ${member.name}`);
      return false;
    default:
      room.tell(member, `unknown command ${command}; ${HINT}`);
  }
  return true;
}

/** "/who": the room's size and names; this server's alone while split. */
function who(room: Room, member: Member): true | Promise<true> {
  const list = (count: number, names: string[], note = "") => {
    const more = count - names.length;
    const listed = names.join(", ") + (more > 0 ? ` and ${more} more` : "");
    room.tell(member, `${count} here: ${listed}${note}`);
    return true as const;
  };
  const here = [...room.members].slice(0, MAX_NAMES_LISTED)
    .map((other) => other.name);
  if (!room.link) return list(room.members.size, here);
  return room.link.who(MAX_NAMES_LISTED).then((whole) =>
    whole ? list(whole.count, whole.names) : list(
      room.members.size,
      here,
      " (the room is split: this server only)",
    )
  );
}

/** "/msg NAME text": shown to NAME alone as "SENDER (private): text". */
function sendPrivately(
  room: Room,
  member: Member,
  argument: string,
): true | Promise<true> {
  const [, to, text] = /^(\S+)\s+(.*\S)/s.exec(argument) ?? [];
  if (!text) {
    room.tell(member, "usage: /msg NAME text");
    return true;
  }
  const bytes = encoder.encode(`${member.name} (private): ${text}\n`);
  const recipient = room.named(to);
  if (recipient) room.sendTo(recipient, bytes);
  else if (!room.link) room.tell(member, `no one called ${to} here`);
  else {
    return room.link.sendTo(to, bytes).then((sent) => {
      if (sent === undefined) {
        room.tell(member, `cannot reach ${to}: the room is split`);
      } else if (!sent) room.tell(member, `no one called ${to} here`);
      return true as const;
    });
  }
  return true;
}

/** "/nick NAME"; a promise while the other servers are asked. */
function nick(room: Room, member: Member, name: string): void | Promise<void> {
  const holder = room.named(name);
  const problem = checkName(name) ??
    (name === member.name ? `you are already ${name}` : undefined) ??
    (holder && holder !== member ? `name ${name} is taken` : undefined);
  if (problem) return room.tell(member, problem);
  const link = room.link;
  if (!link) return room.rename(member, name);
  room.hold(name, member);
  return link.claim(name).then((claimed) => {
    // Only the case changes ("bob" to "Bob"): the key held is its own.
    const same = name.toLowerCase() === member.name.toLowerCase();
    if (claimed === false || !room.members.has(member)) {
      if (!same) room.hold(name);
      if (claimed === false) room.tell(member, `name ${name} is taken`);
      else if (claimed) link.release(name);
      return;
    }
    // While split (undefined) the name is taken here only; the link
    // claims it again when the room is whole.
    if (!same) link.release(member.name);
    room.rename(member, name);
  });
}

/** Why a nickname is refused, or undefined when it is acceptable. */
function checkName(name: string): string | undefined {
  if (name === "") return "usage: /nick NAME";
  if ([...name].length > MAX_NAME_LENGTH) {
    return `name too long (at most ${MAX_NAME_LENGTH} characters)`;
  }
  // Letters and digits of any script plus _ . -: no spaces, no control
  // characters, no ':' that would fake the "name: text" separator.
  if (!/^[\p{L}\p{N}_.-]+$/u.test(name)) {
    return "name may hold only letters, digits, '_', '.' and '-'";
  }
}
