// A web server spoken by hand over TCP: every request gets the page "<h1>Hello world!</h1>".
// Retells 003 §TCP编程 (服务器: the raw "Hello world!" server); the full job: scripts/http_raw_server.ts.
// Run:    deno run --allow-net scripts/basics/http_hello_server.ts [port]   (default 8080; 0 = a free port)
// Try it: curl -i http://127.0.0.1:8080/
// Fixed:  Content-Length and Connection: close (the tutorial's answer has no headers, so only the
//         close ends the page); the request head is read whole first; each client has its own task.
// Leaves out: looking at the request (every path and method gets the page), keep-alive, time limits.

const port = Number(Deno.args[0] ?? 8080);
const listener = Deno.listen({ hostname: "127.0.0.1", port });
console.log(`Listening on http://127.0.0.1:${listener.addr.port}`);

const body = new TextEncoder().encode("<h1>Hello world!</h1>");
const head = "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n" +
  `Content-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
const response = new Uint8Array([...new TextEncoder().encode(head), ...body]);

async function answer(conn: Deno.Conn) {
  // Read up to the blank line that ends the request's head (8 KiB at most).
  // Closing with request bytes still unread would reset the connection,
  // and the browser could lose the page.
  const buffer = new Uint8Array(1024), decoder = new TextDecoder();
  for (let request = ""; !request.includes("\r\n\r\n");) {
    const n = await conn.read(buffer);
    if (n === null || request.length > 8192) return; // gone, or no real request
    request += decoder.decode(buffer.subarray(0, n), { stream: true });
  }
  await conn.writable.getWriter().write(response); // every byte, in one go
}

// Not awaiting answer() lets the next client in while this one is served.
while (true) {
  const conn = await listener.accept().catch(() => null); // null: it reset while queued
  if (conn) answer(conn).catch(() => {}).finally(() => conn.close());
}
