// The chat page that chat_server.ts --web-port serves at GET / (web.ts):
// one HTML document with its style and script inline, so it needs no build
// step and loads nothing from elsewhere, and a Content-Security-Policy that
// allows exactly that style and that script (by their SHA-256 hashes) and a
// WebSocket to the page's own origin. Room text is shown with textContent
// only: whatever a member sends stays text, never markup. Part of the chat
// chapter, in a file of its own because it is browser code, not server
// code.
//
// Read first: SCRIPT (connect, show, and the reconnect back-off).

const STYLE = `
:root { color-scheme: light dark; --accent: #2563eb; --muted: #6b7280; }
* { box-sizing: border-box; }
html, body { height: 100%; margin: 0; }
body {
  display: flex; flex-direction: column; height: 100dvh;
  font: 16px/1.45 system-ui, sans-serif;
}
header {
  display: flex; align-items: baseline; gap: 0.75rem;
  padding: 0.5rem max(0.75rem, env(safe-area-inset-left));
  border-bottom: 1px solid #8884;
}
h1 { font-size: 1.1rem; margin: 0; }
#status { color: var(--muted); font-size: 0.875rem; }
#status.connected { color: #16a34a; }
#log {
  flex: 1; overflow-y: auto; overscroll-behavior: contain;
  padding: 0.5rem max(0.75rem, env(safe-area-inset-left));
}
#log p { margin: 0.15rem 0; white-space: pre-wrap; overflow-wrap: anywhere; }
#log .notice { color: var(--muted); font-style: italic; }
#log .private { color: #b45309; }
#log .mine { color: var(--accent); }
form {
  display: flex; gap: 0.5rem; border-top: 1px solid #8884;
  padding: 0.5rem max(0.75rem, env(safe-area-inset-right))
    max(0.5rem, env(safe-area-inset-bottom)) max(0.75rem, env(safe-area-inset-left));
}
input {
  flex: 1; min-width: 0; font: inherit; padding: 0.6rem 0.75rem;
  border: 1px solid #8888; border-radius: 0.5rem;
}
button {
  font: inherit; min-height: 2.75rem; padding: 0 1.1rem; border: 0;
  border-radius: 0.5rem; background: var(--accent); color: #fff;
}
button:disabled { opacity: 0.5; }
@media (prefers-color-scheme: dark) { #log .mine { color: #93c5fd; } }
`;

const SCRIPT = `
"use strict";
const log = document.getElementById("log");
const form = document.getElementById("form");
const input = document.getElementById("text");
const send = document.getElementById("send");
const status = document.getElementById("status");
const MAX_SHOWN = 500; // older lines leave the page
let socket;
let delay = 1000; // before the next reconnect; doubles up to 30 s
let openedAt = 0;
let quitting = false;

function setStatus(text, connected = false) {
  status.textContent = text;
  status.className = connected ? "connected" : "";
  send.disabled = !connected;
}

// textContent, never innerHTML: a line is shown as the text it is.
function show(text, kind) {
  const near = log.scrollHeight - log.scrollTop - log.clientHeight < 48;
  const line = document.createElement("p");
  line.textContent = text;
  if (kind) line.className = kind;
  log.append(line);
  while (log.childElementCount > MAX_SHOWN) log.firstElementChild.remove();
  if (near) log.scrollTop = log.scrollHeight;
}

function kindOf(text) {
  if (text.startsWith("* ")) return "notice";
  return /^\\S+ \\(private\\): /.test(text) ? "private" : "";
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  socket = new WebSocket(scheme + "//" + location.host + "/ws");
  setStatus("connecting…");
  socket.onopen = () => {
    openedAt = Date.now();
    setStatus("connected", true);
    input.focus();
  };
  socket.onmessage = (event) => show(String(event.data), kindOf(event.data));
  socket.onclose = () => {
    if (quitting) return setStatus("you left; reload to join again");
    // Politely: a connection that lasted resets the back-off; otherwise
    // each try waits twice as long, with jitter so that a room's worth of
    // tabs does not return at the same instant; never while hidden or
    // offline.
    if (Date.now() - openedAt > 10000) delay = 1000;
    const wait = delay * (0.5 + Math.random());
    delay = Math.min(delay * 2, 30000);
    setStatus("disconnected; retrying in " + Math.ceil(wait / 1000) + " s");
    setTimeout(reconnect, wait);
  };
}

function reconnect() {
  if (document.hidden) {
    document.addEventListener("visibilitychange", reconnect, { once: true });
  } else if (!navigator.onLine) {
    addEventListener("online", reconnect, { once: true });
  } else connect();
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const text = input.value;
  if (text.trim() === "" || socket.readyState !== WebSocket.OPEN) return;
  socket.send(text); // one message is one line
  show("› " + text, "mine"); // the room does not echo our own lines
  if (/^\\/quit\\b/i.test(text)) quitting = true;
  input.value = "";
  input.focus();
});

connect();
`;

const HTML = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">
<title>Chat</title>
<style>${STYLE}</style>
</head>
<body>
<header><h1>Chat</h1><span id="status" role="status">loading…</span></header>
<main id="log" role="log" aria-live="polite"></main>
<form id="form" autocomplete="off">
<input id="text" aria-label="Message" placeholder="Say something, or /help" enterkeyhint="send" autocapitalize="off">
<button id="send" disabled>Send</button>
</form>
<script>${SCRIPT}</script>
</body>
</html>
`;

async function sha256(text: string): Promise<string> {
  const bytes = new TextEncoder().encode(text);
  return new Uint8Array(await crypto.subtle.digest("SHA-256", bytes))
    .toBase64();
}

/** The page, as bytes. */
export const PAGE = new TextEncoder().encode(HTML);

/**
 * Only this page's own style and script run; the only connection it may
 * open is to its own origin ('self' covers ws: and wss: there); it may not
 * be framed, submit forms elsewhere, or change its base URL.
 */
export const PAGE_POLICY = [
  "default-src 'none'",
  `style-src 'sha256-${await sha256(STYLE)}'`,
  `script-src 'sha256-${await sha256(SCRIPT)}'`,
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");
