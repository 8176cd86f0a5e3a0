// Tests for chat_server.ts --redis (scripts/chat/redis.ts): servers sharing a
// Redis and a room serve one room (lines, notices, /who, /msg, names unique
// across them); another room stays apart; Redis unreachable at start, lost
// and restarted mid-conversation, and a server killed with -9. Every test
// starts its own redis-server on a free loopback port and stops it by PID.
import assert from "node:assert/strict";
import { startChatServer } from "../scripts/chat_server.ts";
import { connectRoom } from "../scripts/chat/redis.ts";
import {
  closedPort,
  hasCommand,
  LinePeer,
  type RunningPeer,
  type RunningServer,
  runScript,
  scriptPath,
  skipBecause,
  startPeer,
  startScript,
  startUnansweredPort,
  within,
} from "./helpers.ts";

const haveRedis = await hasCommand("redis-server");
if (!haveRedis) skipBecause("redis-server is not installed");

/** A redis-server of our own, on `port` (a free one by default). */
async function startRedis(port = closedPort()) {
  const redis: RunningPeer = await startPeer(
    "redis-server",
    [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--save",
      "",
      "--appendonly",
      "no",
    ],
    /Ready to accept connections/,
    { timeoutMs: 120_000 },
  );
  return { redis, port, url: `redis://127.0.0.1:${port}` };
}

/** A TCP member: LinePeer, with its name and the room's questions. */
class Line extends LinePeer {
  name = "";
  static async connect(port: number) {
    const peer = new Line(await Deno.connect({ hostname: "127.0.0.1", port }));
    const welcome = await peer.next();
    const name = /^\* welcome (\S+); /.exec(welcome)?.[1];
    assert.ok(name, welcome);
    peer.name = name;
    return peer;
  }
  next(ms = 5000): Promise<string> {
    return this.line(ms);
  }
  /** Skips lines until one matches; returns it. */
  async until(pattern: RegExp, ms = 5000): Promise<string> {
    const deadline = Date.now() + ms;
    while (true) {
      const line = await this.next(Math.max(1, deadline - Date.now()));
      if (pattern.test(line)) return line;
    }
  }
  /** The names /who lists, sorted. */
  async who(): Promise<string[]> {
    await this.send("/who\n");
    const line = await this.until(/^\* \d+ here: /);
    return line.replace(/^\* \d+ here: /, "").replace(/ \(.*\)\n$|\n$/, "")
      .split(", ").sort();
  }
}

/** An in-process server on `url`'s room `room`, logging into an array. */
async function startLinked(url: string, room = "lobby") {
  const log: string[] = [];
  const link = await connectRoom(url, room, (line) => log.push(line));
  const server = startChatServer({
    port: 0,
    link,
    log: (line) => log.push(line),
  });
  return { server, port: server.addr.port, log };
}

/** chat_server.ts --redis as a subprocess. */
function startLinkedScript(url: string, more: string[] = []) {
  return startScript("chat_server.ts", [
    "--port",
    "0",
    "--redis",
    url,
    ...more,
  ]);
}

Deno.test({
  name:
    "two servers, one room: lines, notices, /who, /msg and names span both; a third server in another room hears none of it",
  ignore: !haveRedis,
  async fn() {
    const { redis, url } = await startRedis();
    try {
      const a = await startLinked(url, "r1");
      await using _a = a.server;
      const b = await startLinked(url, "r1");
      await using _b = b.server;
      const c = await startLinked(url, "r2");
      await using _c = c.server;

      using x = await Line.connect(a.port);
      using y = await Line.connect(b.port);
      using z = await Line.connect(c.port);
      // Guest numbers come from Redis: unique across the room's servers.
      assert.deepEqual([x.name, y.name, z.name], [
        "guest1",
        "guest2",
        "guest1",
      ]);
      await x.expect("* guest2 joined\n");
      await x.send("hello from A\n");
      await y.expect("guest1: hello from A\n");
      await y.send("/nick alice\n");
      await y.expect("* guest2 is now alice\n");
      await x.expect("* guest2 is now alice\n");
      // A name is taken room-wide, whatever its case, whichever server.
      await x.send("/nick ALICE\n");
      await x.expect("* name ALICE is taken\n");
      await x.send("/msg Alice psst\n/msg nobody hi\n");
      await y.expect("guest1 (private): psst\n");
      await x.expect("* no one called nobody here\n");
      assert.deepEqual(await x.who(), ["alice", "guest1"]);

      // A third server joins the room: its member meets both.
      const d = await startLinked(url, "r1");
      await using _d = d.server;
      using w = await Line.connect(d.port);
      assert.equal(w.name, "guest3");
      await x.expect("* guest3 joined\n");
      await y.expect("* guest3 joined\n");
      await w.send("from D\n");
      await x.expect("guest3: from D\n");
      await y.expect("guest3: from D\n");
      assert.deepEqual(await w.who(), ["alice", "guest1", "guest3"]);
      await y.send("/quit\n");
      await x.expect("* alice left\n");
      await w.expect("* alice left\n");
      // The freed name is free everywhere.
      await w.send("/nick alice\n");
      await w.expect("* guest3 is now alice\n");

      // Room r2 heard nothing of r1, and r1 nothing of it.
      await z.send("only r2\n");
      assert.deepEqual(await z.who(), ["guest1"]);
      await x.send("/who\n");
      await x.expect("* guest3 is now alice\n", "* 2 here: guest1, alice\n");
    } finally {
      await redis.stop("SIGKILL");
    }
  },
});

Deno.test({
  name:
    "Redis unreachable at start: one line, exit 1; a bad URL or room: exit 2; the plain server loads no npm package",
  ignore: !haveRedis,
  async fn() {
    const refused = closedPort();
    const unanswered = await startUnansweredPort();
    try {
      const cases: [string[], number, RegExp][] = [
        [
          ["--redis", `redis://127.0.0.1:${refused}`],
          1,
          new RegExp(
            `^chat_server\\.ts: cannot reach Redis at 127\\.0\\.0\\.1:${refused}: connection refused\\n$`,
          ),
        ],
        [
          ["--redis", `redis://127.0.0.1:${unanswered.addr.port}`],
          1,
          /^chat_server\.ts: cannot reach Redis at 127\.0\.0\.1:\d+: .*(time|no answer).*\n$/i,
        ],
        [
          ["--redis", "http://127.0.0.1:6379"],
          2,
          /^chat_server\.ts: --redis must look like redis:\/\/HOST:PORT\[\/DB\], got 'http:\/\/127\.0\.0\.1:6379'\n/,
        ],
        [
          ["--redis", "redis://127.0.0.1:6379", "--room", "a b"],
          2,
          /^chat_server\.ts: --room may hold only letters, digits/,
        ],
      ];
      await Promise.all(cases.map(async ([args, code, stderr]) => {
        const started = performance.now();
        const result = await runScript("chat_server.ts", [
          "--port",
          "0",
          ...args,
        ]);
        assert.equal(result.code, code, `${args.join(" ")}: ${result.stderr}`);
        assert.match(result.stderr, stderr);
        assert.equal(result.stdout, "");
        assert.ok(performance.now() - started < 10_000);
      }));
    } finally {
      unanswered.close();
    }
    // With an empty Deno cache and no downloads allowed, the plain server
    // still starts: without --redis nothing from npm is needed.
    const empty = await Deno.makeTempDir({ prefix: "deno-dir-" });
    try {
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--cached-only",
          "--allow-net",
          scriptPath("chat_server.ts"),
          "--port",
          "0",
        ],
        env: { DENO_DIR: empty },
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      const lines = child.stdout.pipeThrough(new TextDecoderStream())
        .getReader();
      const first = await within(20_000, lines.read(), "the Listening line");
      child.kill("SIGTERM");
      await lines.cancel();
      const stderr = await new Response(child.stderr).text();
      assert.match(first.value ?? "", /^Listening on tcp:\/\//, stderr);
      assert.equal((await child.status).code, 0);
    } finally {
      await Deno.remove(empty, { recursive: true });
    }
  },
});

/** Waits for a notice on every member given; returns the milliseconds. */
async function told(members: Line[], pattern: RegExp, ms: number) {
  const started = performance.now();
  await Promise.all(members.map((member) => member.until(pattern, ms)));
  return performance.now() - started;
}

Deno.test({
  name:
    "Redis killed and restarted mid-conversation: each server keeps its members talking, says the room is split, then whole",
  ignore: !haveRedis,
  async fn() {
    let { redis, port, url } = await startRedis();
    const servers: RunningServer[] = [];
    try {
      servers.push(await startLinkedScript(url), await startLinkedScript(url));
      using x = await Line.connect(servers[0].port);
      using x2 = await Line.connect(servers[0].port);
      using y = await Line.connect(servers[1].port);
      await x.until(/^\* guest3 joined/);
      await x.send("before\n");
      await y.expect("guest1: before\n");

      await redis.stop("SIGKILL");
      const split = await told(
        [x, x2, y],
        /^\* the room is split: lines reach only this server's members until Redis is back\n$/,
        10_000,
      );
      // Split: the same server's members still talk, at once.
      await x.send("while split\n");
      await x2.expect("guest1: while split\n");
      await y.send("/who\n");
      await y.expect(
        "* 1 here: guest3 (the room is split: this server only)\n",
      );
      await y.send("/msg guest1 are you there\n");
      await y.expect("* cannot reach guest1: the room is split\n");

      // Redis comes back (empty: nothing saved); the servers claim their
      // names again and the room is whole.
      ({ redis } = await startRedis(port));
      const healed = await told(
        [x, x2, y],
        /^\* the room is whole again\n$/,
        20_000,
      );
      await y.send("after\n");
      await x.expect("guest3: after\n");
      await x2.expect("guest3: after\n");
      assert.deepEqual(await x.who(), ["guest1", "guest2", "guest3"]);
      // New members still get names no one has.
      using v = await Line.connect(servers[1].port);
      assert.ok(!["guest1", "guest2", "guest3"].includes(v.name), v.name);
      console.log(
        `  split told in ${split.toFixed(0)} ms; whole again ${
          healed.toFixed(0)
        } ms after Redis was back`,
      );
      for (const server of servers.splice(0)) {
        const output = await server.stop();
        assert.equal(output.code, 0, output.stderr);
        assert.match(output.stderr, /the room is split/);
        assert.match(output.stderr, /is back; the room is whole/);
      }
    } finally {
      for (const server of servers) await server.stop("SIGKILL");
      await redis.stop("SIGKILL");
    }
  },
});

Deno.test({
  name:
    "a server killed with -9: its members leave the others' /who (and are announced gone) within 30 s",
  ignore: !haveRedis,
  async fn() {
    const { redis, url } = await startRedis();
    const servers: RunningServer[] = [];
    try {
      servers.push(await startLinkedScript(url), await startLinkedScript(url));
      using x = await Line.connect(servers[0].port);
      using y = await Line.connect(servers[1].port);
      await y.send("/nick doomed\n");
      await x.until(/^\* guest2 is now doomed\n$/);
      assert.deepEqual(await x.who(), ["doomed", "guest1"]);
      const started = performance.now();
      await servers[1].stop("SIGKILL");
      await x.until(/^\* doomed left \(server lost\)\n$/, 30_000);
      const gone = performance.now() - started;
      assert.deepEqual(await x.who(), ["guest1"]);
      // Its name is free again.
      await x.send("/nick doomed\n");
      await x.expect("* guest1 is now doomed\n");
      console.log(
        `  a killed server's member left the room after ${gone.toFixed(0)} ms`,
      );
    } finally {
      for (const server of servers) await server.stop("SIGKILL");
      await redis.stop("SIGKILL");
    }
  },
});

Deno.test({
  name:
    "a name taken on both sides while split goes to one member; the other is renamed and told why",
  ignore: !haveRedis,
  async fn() {
    let { redis, port, url } = await startRedis();
    const a = await startLinked(url);
    const b = await startLinked(url);
    try {
      using x = await Line.connect(a.port);
      using y = await Line.connect(b.port);
      await x.until(/^\* guest2 joined\n$/);
      await redis.stop("SIGKILL");
      await told([x, y], /^\* the room is split/, 10_000);
      await x.send("/nick sam\n");
      await y.send("/nick Sam\n");
      await x.expect("* guest1 is now sam\n");
      await y.expect("* guest2 is now Sam\n");
      ({ redis } = await startRedis(port));
      // Whichever server claims again first keeps the name; the other's
      // member is renamed (told before the room is whole).
      const heard = await Promise.all([x, y].map(async (member) => {
        const lines: string[] = [];
        while (!lines.includes("* the room is whole again\n")) {
          lines.push(await member.next(20_000));
        }
        return lines.join("");
      }));
      const renamed = heard.join("").match(
        /^\* (sam|Sam) was taken on another server; you are now guest\d+$/gm,
      );
      assert.equal(renamed?.length, 1, heard.join(""));
      const names = await x.who();
      assert.equal(names.length, 2);
      assert.equal(
        names.filter((name) => /^sam$/i.test(name)).length,
        1,
        `${renamed} ${names}`,
      );
    } finally {
      await a.server.close();
      await b.server.close();
      await redis.stop("SIGKILL");
    }
  },
});

Deno.test({
  name:
    "a browser member on one server and a terminal member on another: lines and /msg both ways",
  ignore: !haveRedis,
  async fn() {
    const { redis, url } = await startRedis();
    try {
      const log: string[] = [];
      const a = startChatServer({
        port: 0,
        webPort: 0,
        link: await connectRoom(url, "mixed", (line) => log.push(line)),
        log: (line) => log.push(line),
      });
      await using _a = a;
      const b = await startLinked(url, "mixed");
      await using _b = b.server;
      const socket = new WebSocket(`ws://127.0.0.1:${a.webAddr!.port}/ws`);
      const messages: string[] = [];
      let arrived: (() => void) | undefined;
      socket.onmessage = (event) => {
        messages.push(String(event.data));
        arrived?.();
      };
      const closed = new Promise((resolve) => socket.onclose = resolve);
      const next = () =>
        within(
          5000,
          (async () => {
            while (messages.length === 0) {
              await new Promise<void>((resolve) => arrived = resolve);
            }
            return messages.shift()!;
          })(),
          "a WebSocket message",
        );
      try {
        assert.equal(await next(), "* welcome guest1; /help lists commands");
        using y = await Line.connect(b.port);
        assert.equal(await next(), "* guest2 joined");
        socket.send("from the browser on A");
        await y.expect("guest1: from the browser on A\n");
        await y.send("from the terminal on B\n/msg GUEST1 only you\n");
        assert.equal(await next(), "guest2: from the terminal on B");
        assert.equal(await next(), "guest2 (private): only you");
        socket.send("/msg guest2 and back");
        await y.expect("guest1 (private): and back\n");
      } finally {
        socket.close();
        await closed;
      }
    } finally {
      await redis.stop("SIGKILL");
    }
  },
});
