// Baseline: upload_server.ts's work done in Node as an expert would, the
// same wire format (`UPLOAD <size> <name>\n`, then the bytes; one reply
// line) and the same steps: each chunk is hashed (SHA-256) and handed to a
// write stream into a temporary file, with backpressure (the socket pauses
// while the file is behind); once all bytes are in, the file is flushed to
// disk, linked to its name (never over an existing file) and the directory
// flushed, and only then comes `200 OK <size> <sha256>`. Unsafe names, a
// name that exists and short bodies get a 4xx, and a client that vanishes
// leaves no temporary file.
// Run: node bench/baselines/node_upload.mjs --port 0 --dir DIR
import net from "node:net";
import fs from "node:fs";
import { createHash, randomBytes } from "node:crypto";
import path from "node:path";
import process from "node:process";
import { Buffer } from "node:buffer";

const option = (name) => process.argv[process.argv.indexOf(name) + 1];
const port = Number(option("--port") ?? 0);
const dir = fs.realpathSync(option("--dir") ?? ".");
const HEADER_LIMIT = 4096;

function nameProblem(name) {
  if (name === "" || name === "." || name === "..") return "bad file name";
  if (/[/\\]/.test(name)) return "file name must not contain '/' or '\\'";
  if (/[\p{Cc}\p{Cf}]/u.test(name)) return "control characters in file name";
  if (Buffer.byteLength(name) > 255) return "file name longer than 255 bytes";
  return null;
}

function handle(socket) {
  let header = Buffer.alloc(0);
  let state = "header"; // then "body", then "done"
  let size = 0;
  let received = 0;
  let file;
  let hash;
  let temp;
  let finalPath;

  const answer = (line) => {
    state = "done";
    socket.end(`${line}\n`);
  };

  const removeTemp = () => {
    if (temp) fs.unlink(temp, () => {});
    temp = undefined;
  };

  const feed = (chunk) => {
    const part = chunk.subarray(0, size - received);
    received += part.length;
    hash.update(part);
    // Backpressure: the socket waits while the file is behind.
    if (!file.write(part)) {
      socket.pause();
      file.once("drain", () => socket.resume());
    }
    if (received === size) {
      state = "flushing";
      file.end();
    }
  };

  const start = (line, rest) => {
    const match = /^UPLOAD (\d+) (.*)$/s.exec(line.replace(/\r$/, ""));
    if (!match) return answer("400 malformed header");
    size = Number(match[1]);
    const name = match[2];
    const problem = nameProblem(name);
    if (problem) return answer(`400 ${problem}`);
    finalPath = path.join(dir, name);
    if (fs.existsSync(finalPath)) return answer(`409 '${name}' already exists`);
    temp = path.join(dir, `.upload-${randomBytes(16).toString("hex")}.tmp`);
    hash = createHash("sha256");
    // flush: fsync before the stream closes, so the bytes are on disk.
    file = fs.createWriteStream(temp, {
      flags: "wx",
      flush: true,
      highWaterMark: 1024 * 1024,
    });
    file.on("error", (error) => {
      if (state !== "done") answer(`500 storage failure: ${error.code}`);
    });
    file.on("close", () => {
      // Closed after a failure or a vanished client: nothing stays behind.
      if (state !== "flushing") return removeTemp();
      fs.link(temp, finalPath, (error) => {
        removeTemp();
        if (error) {
          return answer(
            error.code === "EEXIST" ? "409 name taken" : "500 storage failure",
          );
        }
        // The new directory entry must be durable too.
        fs.open(dir, "r", (error, fd) => {
          if (error) return answer("500 storage failure");
          fs.fsync(fd, () => {
            fs.close(fd, () => {});
            answer(`200 OK ${size} ${hash.digest("hex")}`);
          });
        });
      });
    });
    state = "body";
    if (size === 0) {
      state = "flushing";
      file.end();
    } else if (rest.length > 0) feed(rest);
  };

  socket.on("data", (chunk) => {
    if (state === "body") return feed(chunk);
    if (state !== "header") return; // bytes after the body: ignored
    header = Buffer.concat([header, chunk]);
    const newline = header.indexOf(0x0a);
    if (newline === -1) {
      if (header.length > HEADER_LIMIT) answer("400 header too long");
      return;
    }
    start(header.subarray(0, newline).toString(), header.subarray(newline + 1));
  });
  // The client half-closed, or vanished, before the body was complete:
  // nothing stays behind (the write stream's "close" removes the file).
  socket.on("end", () => {
    if (state === "header") answer("400 closed before a complete header");
    if (state !== "body") return;
    answer(`400 body ended after ${received} of ${size} bytes`);
    file.destroy();
  });
  socket.on("close", () => {
    if (state !== "body") return;
    state = "done";
    file.destroy();
  });
  socket.on("error", () => socket.destroy());
}

// allowHalfOpen: a client that half-closes early still gets its 400.
const server = net.createServer({ noDelay: true, allowHalfOpen: true }, handle);
server.listen(port, "127.0.0.1", () => {
  console.log(`Listening on tcp://127.0.0.1:${server.address().port}`);
});
