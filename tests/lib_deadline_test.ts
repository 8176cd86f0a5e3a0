// lib/deadline.ts: sleep, raceTimeout, withDeadline, seconds, the Sweeper
// and TimedConn. Deno's sanitizers are the judge of "the timer is cleared":
// a test that leaves a timeout or interval pending fails. Bounds are loose
// (the machine is shared); what is checked is "never early, not hugely late".
import assert from "node:assert/strict";
import {
  raceTimeout,
  seconds,
  sleep,
  Sweeper,
  TIMED_OUT,
  TimedConn,
  withDeadline,
} from "../lib/deadline.ts";
import { Failure } from "../lib/errors.ts";
import { within } from "./helpers.ts";

// Deno 2.8+ runs tests without the op and resource sanitizers unless asked:
// a leaked socket, timer or pending read must fail these tests.
Deno.test.sanitizer({ ops: true, resources: true });

/** A connected loopback TCP pair. */
async function tcpPair(): Promise<[Deno.TcpConn, Deno.TcpConn]> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [client, server] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    listener.accept(),
  ]);
  return [client, server];
}

function isClosed(conn: Deno.Conn): boolean {
  try {
    conn.close();
    return false;
  } catch {
    return true;
  }
}

/** How long `promise` took, in ms. */
async function timed(promise: Promise<unknown>): Promise<number> {
  const started = performance.now();
  await promise;
  return performance.now() - started;
}

// --- sleep. ---

Deno.test("sleep waits at least ms", async () => {
  const took = await timed(sleep(100));
  assert.ok(took >= 95, `slept ${took} ms`);
});

Deno.test("sleep ends early, without error, when its signal aborts; its timer is cleared", async () => {
  const controller = new AbortController();
  const listeners = { added: 0, removed: 0 };
  const { signal } = controller;
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  signal.addEventListener = (...args: Parameters<typeof add>) => {
    listeners.added++;
    add(...args);
  };
  signal.removeEventListener = (...args: Parameters<typeof remove>) => {
    listeners.removed++;
    remove(...args);
  };
  // 60 s: were the timer left behind, the sanitizer would fail this test.
  const sleeping = sleep(60_000, signal);
  setTimeout(() => controller.abort(), 50);
  const took = await within(5000, timed(sleeping), "aborted sleep");
  assert.ok(took >= 40, `ended after ${took} ms`);
  assert.deepEqual(listeners, { added: 1, removed: 1 });
  // Already aborted: at once, no listener, no timer.
  assert.equal(
    await within(1000, sleep(60_000, signal).then(() => "done")),
    "done",
  );
  assert.equal(listeners.added, 1);
  // Ending by time also removes the listener.
  const other = new AbortController();
  let removed = 0;
  const removeOther = other.signal.removeEventListener.bind(other.signal);
  other.signal.removeEventListener = (
    ...args: Parameters<typeof removeOther>
  ) => {
    removed++;
    removeOther(...args);
  };
  await sleep(10, other.signal);
  assert.equal(removed, 1);
});

// --- raceTimeout. ---

Deno.test("raceTimeout: the value in time, TIMED_OUT after ms, rejections pass through", async () => {
  // 60 s timers: each must be cleared for the sanitizer to pass.
  assert.equal(await raceTimeout(Promise.resolve(42), 60_000), 42);
  assert.equal(
    await raceTimeout(sleep(10).then(() => "late but in time"), 60_000),
    "late but in time",
  );
  const never = new Promise<string>(() => {});
  const started = performance.now();
  assert.equal(await raceTimeout(never, 100), TIMED_OUT);
  assert.ok(performance.now() - started >= 95);
  await assert.rejects(
    () =>
      raceTimeout(Promise.reject(new Deno.errors.ConnectionReset("x")), 60_000),
    Deno.errors.ConnectionReset,
  );
  assert.equal(typeof TIMED_OUT, "symbol");
});

// --- withDeadline. ---

Deno.test("withDeadline: on expiry closes the resource and throws Failure(message, 'timeout')", async () => {
  const [client, server] = await tcpPair();
  const started = performance.now();
  const error = await withDeadline(
    client,
    200,
    () => client.read(new Uint8Array(10)),
    "no reply: timed out after 0.2 s",
  ).then(() => undefined, (error) => error);
  const took = performance.now() - started;
  assert.ok(error instanceof Failure, `got ${error}`);
  assert.equal(error.kind, "timeout");
  assert.equal(error.message, "no reply: timed out after 0.2 s");
  assert.ok(took >= 190 && took < 5000, `took ${took} ms`);
  assert.equal(isClosed(client), true); // closed by the deadline
  // The peer sees the end.
  assert.equal(await server.read(new Uint8Array(10)), null);
  server.close();
});

Deno.test("withDeadline: work that ends late without error is still a timeout", async () => {
  let closed = 0;
  const resource = { close: () => closed++ };
  await assert.rejects(
    () =>
      withDeadline(
        resource,
        50,
        () => sleep(200).then(() => "too late"),
        "slow",
      ),
    (error: unknown) =>
      error instanceof Failure && error.kind === "timeout" &&
      error.message === "slow",
  );
  assert.equal(closed, 1);
  // A resource whose close() throws (already closed): still the Failure.
  const closedAlready = {
    close() {
      throw new Deno.errors.BadResource("closed");
    },
  };
  await assert.rejects(
    () => withDeadline(closedAlready, 50, () => sleep(200), "still a timeout"),
    (error: unknown) => error instanceof Failure && error.kind === "timeout",
  );
});

Deno.test("withDeadline in time: the value, the resource open, the timer cleared", async () => {
  const [client, server] = await tcpPair();
  await server.write(new TextEncoder().encode("hi"));
  // 60 s deadline: a timer left pending would fail the sanitizer.
  const buffer = new Uint8Array(10);
  const count = await withDeadline(
    client,
    60_000,
    () => client.read(buffer),
    "x",
  );
  assert.equal(count, 2);
  assert.equal(isClosed(client), false); // isClosed closed it just now
  server.close();
  // The work's own error, in time, passes through unchanged.
  let closed = 0;
  await assert.rejects(
    () =>
      withDeadline({ close: () => closed++ }, 60_000, () => {
        throw new Deno.errors.ConnectionRefused("refused");
      }, "x"),
    Deno.errors.ConnectionRefused,
  );
  assert.equal(closed, 0);
});

Deno.test("seconds: milliseconds as people write them", () => {
  assert.equal(seconds(2000), "2 s");
  assert.equal(seconds(500), "0.5 s");
  assert.equal(seconds(1), "0.001 s");
  assert.equal(seconds(1234.5678), "1.235 s");
  assert.equal(seconds(0), "0 s");
  assert.equal(seconds(86_400_000), "86400 s");
});

// --- Sweeper. ---

Deno.test("Sweeper.add: expires after ms (never before), once; the timer stops when empty", async () => {
  const sweeper = new Sweeper(20);
  const started = performance.now();
  const expired = Promise.withResolvers<number>();
  let calls = 0;
  sweeper.add(150, () => {
    calls++;
    expired.resolve(performance.now() - started);
  });
  const took = await within(5000, expired.promise, "expiry");
  assert.ok(took >= 140, `expired after ${took} ms`);
  await sleep(100);
  assert.equal(calls, 1);
  // No remove(), no stop(): the sanitizer checks that no interval is left.
});

Deno.test("Sweeper: remove() cancels; moving entry.at postpones", async () => {
  const sweeper = new Sweeper(20);
  let removedFired = false;
  const removed = sweeper.add(50, () => removedFired = true);
  sweeper.remove(removed);
  sweeper.remove(removed); // twice: harmless
  const started = performance.now();
  const expired = Promise.withResolvers<number>();
  const entry = sweeper.add(
    100,
    () => expired.resolve(performance.now() - started),
  );
  await sleep(60);
  entry.at = Date.now() + 300; // the connection made progress: later
  const took = await within(5000, expired.promise, "postponed expiry");
  assert.ok(took >= 340, `expired after ${took} ms despite the postponement`);
  assert.equal(removedFired, false);
});

Deno.test("Sweeper.idle: progress postpones, silence expires", async () => {
  const sweeper = new Sweeper(20);
  const progress = { bytes: 0 };
  const started = performance.now();
  const expired = Promise.withResolvers<number>();
  sweeper.idle(
    progress,
    150,
    () => expired.resolve(performance.now() - started),
  );
  // Busy for 500 ms (bytes move every 50 ms), then silent.
  while (performance.now() - started < 500) {
    progress.bytes += 100;
    await sleep(50);
  }
  const silentFrom = performance.now() - started;
  const took = await within(5000, expired.promise, "idle expiry");
  assert.ok(
    took >= silentFrom + 100,
    `expired at ${took} ms, silent from ${silentFrom} ms`,
  );
  // An idle entry whose counter never moves expires like add().
  const still = Promise.withResolvers<void>();
  sweeper.idle({ bytes: 5 }, 50, () => still.resolve());
  await within(5000, still.promise, "idle expiry of a silent entry");
});

Deno.test("Sweeper: one interval for a thousand entries, none once they are gone", async () => {
  const realSetInterval = globalThis.setInterval;
  let intervals = 0;
  globalThis.setInterval = ((...args: Parameters<typeof setInterval>) => {
    intervals++;
    return realSetInterval(...args);
  }) as typeof setInterval;
  try {
    const sweeper = new Sweeper(20);
    let expired = 0;
    const all = Promise.withResolvers<void>();
    const entries = Array.from(
      { length: 1000 },
      (_, index) =>
        sweeper.add(index % 2 === 0 ? 50 : 60_000, () => {
          if (++expired === 500) all.resolve();
        }),
    );
    assert.equal(intervals, 1);
    await within(5000, all.promise, "500 expiries");
    // Remove the 500 long ones: the interval must stop (sanitizer).
    for (const [index, entry] of entries.entries()) {
      if (index % 2 === 1) sweeper.remove(entry);
    }
    // A new entry starts it again, and its expiry stops it again.
    const again = Promise.withResolvers<void>();
    sweeper.add(30, () => again.resolve());
    assert.equal(intervals, 2);
    await within(5000, again.promise, "expiry after restart");
    assert.equal(expired, 500);
  } finally {
    globalThis.setInterval = realSetInterval;
  }
});

Deno.test("Sweeper: an expire() that adds a new entry (re-arming) works", async () => {
  const sweeper = new Sweeper(20);
  const fired: number[] = [];
  const done = Promise.withResolvers<void>();
  const arm = (round: number) =>
    sweeper.add(30, () => {
      fired.push(round);
      if (round < 3) arm(round + 1);
      else done.resolve();
    });
  arm(1);
  await within(5000, done.promise, "three rounds");
  assert.deepEqual(fired, [1, 2, 3]);
});

Deno.test("Sweeper closing idle loopback connections, the way a server uses it", async () => {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const sweeper = new Sweeper(25);
  const clients = await Promise.all(
    Array.from(
      { length: 5 },
      () => Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
    ),
  );
  const served = await Promise.all(clients.map(() => listener.accept()));
  const traffic = served.map(() => ({ bytes: 0 }));
  const handlers = served.map(async (conn, index) => {
    const entry = sweeper.idle(traffic[index], 200, () => conn.close());
    const buffer = new Uint8Array(64);
    try {
      for (let count; (count = await conn.read(buffer)) !== null;) {
        traffic[index].bytes += count;
      }
    } catch {
      // Closed by the sweeper.
    } finally {
      sweeper.remove(entry);
    }
  });
  // Client 0 keeps talking for 600 ms; the others are silent.
  const started = performance.now();
  while (performance.now() - started < 600) {
    await clients[0].write(new Uint8Array(1));
    await sleep(40);
  }
  // The silent ones were closed (their peers read the end) while 0 lives.
  for (const client of clients.slice(1)) {
    assert.equal(await within(5000, client.read(new Uint8Array(8))), null);
  }
  assert.equal(await clients[0].write(new Uint8Array(1)), 1);
  assert.ok(traffic[0].bytes >= 5);
  // Then 0 falls silent and is closed too.
  assert.equal(await within(5000, clients[0].read(new Uint8Array(8))), null);
  await Promise.all(handlers);
  for (const client of clients) client.close();
});

// --- TimedConn. ---

Deno.test("TimedConn: reads and writes in time pass through", async () => {
  const [client, server] = await tcpPair();
  const timed = new TimedConn(client, 60_000, "127.0.0.1:1");
  assert.equal(await timed.write(new TextEncoder().encode("ping")), 4);
  const buffer = new Uint8Array(8);
  assert.equal(await server.read(buffer), 4);
  await server.write(new TextEncoder().encode("pong"));
  assert.equal(await timed.read(buffer), 4);
  assert.equal(new TextDecoder().decode(buffer.subarray(0, 4)), "pong");
  await timed.conn.closeWrite(); // unbounded: not a wait on the peer
  assert.equal(await server.read(buffer), null);
  server.close();
  assert.equal(await timed.read(buffer), null);
  timed.close();
  timed.close(); // twice: quiet
});

Deno.test("TimedConn: a read with no answer fails within ms, naming the peer, and closes", async () => {
  const [client, server] = await tcpPair();
  const timed = new TimedConn(client, 200, "example.test:80");
  const started = performance.now();
  await assert.rejects(
    () => timed.read(new Uint8Array(8)),
    (error: unknown) =>
      error instanceof Failure && error.kind === "timeout" &&
      error.message ===
        "example.test:80: timed out after 0.2 s waiting for data",
  );
  const took = performance.now() - started;
  assert.ok(took >= 190 && took < 5000, `took ${took} ms`);
  assert.equal(isClosed(client), true);
  server.close();
});

Deno.test("TimedConn: a write into a peer that never reads fails within ms ('sending')", async () => {
  const [client, server] = await tcpPair();
  const timed = new TimedConn(client, 300, "[::1]:9");
  const chunk = new Uint8Array(1024 * 1024);
  const error = await within(
    30_000,
    (async () => {
      // Fill both kernel buffers; then a write waits, and the deadline hits.
      for (let i = 0; i < 512; i++) await timed.write(chunk);
    })().then(() => undefined, (error) => error),
    "the stalled write",
  );
  assert.ok(error instanceof Failure, `got ${error}`);
  assert.equal(error.kind, "timeout");
  assert.equal(error.message, "[::1]:9: timed out after 0.3 s sending");
  assert.equal(isClosed(client), true);
  server.close();
});

Deno.test("Sweeper.forTimeout: a fifth of the timeout, from 20 ms to 1 s", () => {
  assert.equal(Sweeper.forTimeout(50).periodMs, 20);
  assert.equal(Sweeper.forTimeout(500).periodMs, 100);
  assert.equal(Sweeper.forTimeout(5000).periodMs, 1000);
  assert.equal(Sweeper.forTimeout(1_800_000).periodMs, 1000); // chat's 30 min
});
