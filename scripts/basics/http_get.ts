// Fetches a web page over a bare TCP socket: prints the head, saves the body's bytes to a file.
// Retells 003 §TCP编程 (客户端: the raw GET saved to a file); the full job: scripts/http_client.ts.
// Run:    deno run --allow-net=example.com --allow-write=page.html scripts/basics/http_get.ts http://example.com/ page.html
// Try it: python3 -m http.server 8000 --bind 127.0.0.1, then fetch http://127.0.0.1:8000/
// Fixed:  asks in HTTP/1.0, so the body comes as is (the tutorial's HTTP/1.1 request lets the
//         server send it in chunks, and their sizes would end up in the file); sends with sendall.
// Leaves out: https, redirects, time limits, any cap on the page's size.

const [address = "http://127.0.0.1:8000/", file = "page.html"] = Deno.args;
const url = new URL(address);
const port = Number(url.port || 80); // 80: the web's well-known port
const conn = await Deno.connect({ hostname: url.hostname, port });

// The request: a request line, headers, then a blank line. "Connection: close"
// asks the server to close when the page is done: that close marks the end.
const request = `GET ${url.pathname}${url.search} HTTP/1.0\r\n` +
  `Host: ${url.host}\r\nConnection: close\r\n\r\n`;
await conn.writable.getWriter().write(new TextEncoder().encode(request));

// recv() until the server closes (read() gives null), keeping every chunk.
const chunks: Uint8Array<ArrayBuffer>[] = [];
const buffer = new Uint8Array(65536);
for (let n; (n = await conn.read(buffer)) !== null;) {
  chunks.push(buffer.slice(0, n));
}
conn.close();
const data = new Uint8Array(await new Blob(chunks).arrayBuffer());

// The head ends at the first blank line, CR LF CR LF; the body is every byte after it.
const end = data.findIndex((_, i) =>
  data[i] === 13 && data[i + 1] === 10 && data[i + 2] === 13 &&
  data[i + 3] === 10
);
if (end < 0) {
  console.error("no blank line after the head: not an HTTP response");
  Deno.exit(1);
}
console.log(new TextDecoder().decode(data.subarray(0, end)));
await Deno.writeFile(file, data.subarray(end + 4));
