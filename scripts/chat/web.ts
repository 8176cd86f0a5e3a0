// The HTTP side of chat_server.ts --web-port: one request per connection,
// answered with the chat page (GET /, page.ts), a short error, or the
// switch to a WebSocket (GET /ws) whose frames websocket.ts speaks. Part of
// the chat chapter, in a file of its own to keep chat_server.ts within its
// reading budget. Its limits: a request head of 16 KiB at most, within
// 10 s; a page from another site (its Origin) may not open the socket.
//
// Read first: acceptWeb, then check.
import { seconds, withDeadline } from "../../lib/deadline.ts";
import * as http from "../../lib/http1.ts";
import { concat, replyAndClose, writeAll } from "../../lib/io.ts";
import { BufferedReader } from "../../lib/reader.ts";
import { PAGE, PAGE_POLICY } from "./page.ts";
import { WebSocketPeer } from "./websocket.ts";

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

const encoder = new TextEncoder();

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
  const accept = new Uint8Array(digest).toBase64();
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
  await replyAndClose(conn, all, HEAD_MS); // one that will not read: closed
}
