// Baseline: a JSON-RPC 2.0 server over TCP in Node, one JSON text per line
// each way, as an expert would write it for rpc_server.ts's job: methods
// add, echo, time and sleep; calls on one connection run concurrently (a
// slow sleep never holds back a later add) and each response carries its
// id; notifications get no response, batches an array; the specification's
// error codes; a 1 MiB line limit (-32700, then close); at most 100 calls
// in flight per connection (the socket is paused meanwhile). The answers to
// all the calls of one read that finish at once go out in one write.
// Run: node bench/baselines/node_rpc.mjs --port 0
import net from "node:net";
import process from "node:process";
import { setTimeout as sleep } from "node:timers/promises";
import { Buffer } from "node:buffer";

const argv = process.argv;
const port = Number(argv[argv.indexOf("--port") + 1] ?? 0);
const MAX_LINE = 1024 * 1024;
const MAX_IN_FLIGHT = 100;

class RpcError extends Error {
  constructor(code, message) {
    super(message);
    this.code = code;
  }
}
const invalidParams = () => new RpcError(-32602, "Invalid params");

/** Positional [a, b] or named {a, b}. */
function pair(params, first, second) {
  return Array.isArray(params) ? params : [params?.[first], params?.[second]];
}

const methods = {
  add(params) {
    const [a, b] = pair(params, "a", "b");
    if (typeof a !== "number" || typeof b !== "number") throw invalidParams();
    return a + b;
  },
  echo(params) {
    return params ?? null;
  },
  time() {
    return new Date().toISOString();
  },
  async sleep(params) {
    const ms = Array.isArray(params) ? params[0] : params?.ms;
    if (typeof ms !== "number" || !(ms >= 0 && ms <= 10_000)) {
      throw invalidParams();
    }
    await sleep(ms);
    return ms;
  },
};

const response = (id, result) => JSON.stringify({ jsonrpc: "2.0", result, id });
const failure = (id, code, message) =>
  JSON.stringify({ jsonrpc: "2.0", error: { code, message }, id });
const validId = (id) =>
  id === null || typeof id === "string" || typeof id === "number";

/** One call: its response text, a promise of it, or null (notification). */
function call(request) {
  if (
    typeof request !== "object" || request === null ||
    Array.isArray(request) || request.jsonrpc !== "2.0" ||
    typeof request.method !== "string" ||
    (request.params !== undefined && typeof request.params !== "object") ||
    ("id" in request && !validId(request.id))
  ) {
    const id = validId(request?.id) ? request.id : null;
    return failure(id, -32600, "Invalid Request");
  }
  const notification = !("id" in request);
  const { id, method, params } = request;
  const answer = (run) => {
    try {
      const result = run();
      if (result instanceof Promise) {
        return result.then(
          (value) => notification ? null : response(id, value),
          (error) => notification ? null : errorText(id, error),
        );
      }
      return notification ? null : response(id, result);
    } catch (error) {
      return notification ? null : errorText(id, error);
    }
  };
  if (!Object.hasOwn(methods, method)) {
    return notification ? null : failure(id, -32601, "Method not found");
  }
  return answer(() => methods[method](params));
}

function errorText(id, error) {
  return error instanceof RpcError
    ? failure(id, error.code, error.message)
    : failure(id, -32603, "Internal error");
}

function handle(socket) {
  let partial = null;
  let inFlight = 0;
  let closed = false;
  let ended = false; // the client half-closed: finish what is in flight

  const send = (text) => {
    if (!closed) socket.write(text + "\n");
  };
  const track = (promise) => {
    if (++inFlight >= MAX_IN_FLIGHT) socket.pause();
    promise.then((text) => {
      if (text !== null) send(text);
      if (--inFlight < MAX_IN_FLIGHT && !closed) socket.resume();
      if (ended && inFlight === 0) socket.end();
    });
  };

  /** Runs one line; returns the text to send now, or null. */
  const line = (text) => {
    let request;
    try {
      request = JSON.parse(text);
    } catch {
      return failure(null, -32700, "Parse error");
    }
    if (!Array.isArray(request)) {
      const result = call(request);
      if (result instanceof Promise) {
        track(result);
        return null;
      }
      return result;
    }
    if (request.length === 0) return failure(null, -32600, "Invalid Request");
    const results = request.map(call);
    if (!results.some((result) => result instanceof Promise)) {
      const texts = results.filter((result) => result !== null);
      return texts.length > 0 ? `[${texts.join(",")}]` : null;
    }
    track(
      Promise.all(results).then((all) => {
        const texts = all.filter((result) => result !== null);
        return texts.length > 0 ? `[${texts.join(",")}]` : null;
      }),
    );
    return null;
  };

  socket.on("data", (chunk) => {
    const data = partial ? Buffer.concat([partial, chunk]) : chunk;
    const out = [];
    let start = 0;
    let newline;
    while ((newline = data.indexOf(0x0a, start)) !== -1) {
      if (newline - start > MAX_LINE) break;
      const text = data.toString("utf8", start, newline).trim();
      start = newline + 1;
      if (text === "") continue;
      const answer = line(text);
      if (answer !== null) out.push(answer, "\n");
    }
    partial = start < data.length ? data.subarray(start) : null;
    if (out.length > 0) socket.write(out.join(""));
    if (
      partial && (partial.indexOf(0x0a) !== -1 || partial.length > MAX_LINE)
    ) {
      send(failure(null, -32700, "Parse error: line too long"));
      closed = true;
      socket.end();
    }
  });
  socket.on("end", () => {
    ended = true;
    if (inFlight === 0) socket.end();
  });
  socket.on("close", () => closed = true);
  socket.on("error", () => socket.destroy());
}

const server = net.createServer({ noDelay: true, allowHalfOpen: true }, handle);
server.listen(port, "127.0.0.1", () => {
  console.log(`Listening on tcp://127.0.0.1:${server.address().port}`);
});
