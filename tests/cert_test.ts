import assert from "node:assert/strict";
import { makeCertificates } from "../scripts/make_cert.ts";
import {
  hasCommand,
  makeTestCerts,
  runScript,
  runTool,
  skipBecause,
} from "./helpers.ts";

const HAVE_OPENSSL = await hasCommand("openssl");
const decoder = new TextDecoder();

/** make_cert.ts as `deno task cert` runs it, allowed DIR only. */
function makeCert(
  dir: string,
  args: string[] = [],
  env?: Record<string, string>,
) {
  return runScript("make_cert.ts", [dir, ...args], {
    allow: [
      "--allow-run=openssl",
      `--allow-read=${dir}`,
      `--allow-write=${dir}`,
    ],
    env,
  });
}

/** A test with a fresh temporary folder, skipped without openssl. */
function folderTest(name: string, fn: (dir: string) => Promise<void>) {
  Deno.test(name, async () => {
    if (!HAVE_OPENSSL) return skipBecause("openssl is not installed");
    const dir = await Deno.makeTempDir({ prefix: "cert-test-" });
    try {
      await fn(dir);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

async function openssl(...args: string[]): Promise<string> {
  const result = await runTool("openssl", args);
  assert.equal(result.code, 0, result.stderr);
  return decoder.decode(result.stdout);
}

/** Seconds between notBefore and notAfter. */
async function lifetime(pem: string): Promise<number> {
  const dates = await openssl(
    "x509",
    "-in",
    pem,
    "-noout",
    "-startdate",
    "-enddate",
  );
  const [start, end] = [...dates.matchAll(/=(.*)/g)].map((m) =>
    Date.parse(m[1])
  );
  return (end - start) / 1000;
}

folderTest(
  "make_cert.ts makes a constrained CA and a 14-day ECDSA localhost leaf, keys 0600",
  async (base) => {
    const dir = `${base}/certs`;
    const output = await makeCert(dir);
    assert.equal(output.code, 0, output.stderr);
    assert.equal(output.stderr, "");
    for (const name of ["ca.key", "localhost.key"]) {
      assert.equal(
        (await Deno.stat(`${dir}/${name}`)).mode! & 0o777,
        0o600,
        name,
      );
    }
    assert.equal((await Deno.stat(dir)).mode! & 0o777, 0o700);
    assert.match(
      await openssl(
        "verify",
        "-CAfile",
        `${dir}/ca.pem`,
        `${dir}/localhost.pem`,
      ),
      /localhost\.pem: OK/,
    );
    const leaf = await openssl(
      "x509",
      "-in",
      `${dir}/localhost.pem`,
      "-noout",
      "-text",
    );
    assert.match(leaf, /Basic Constraints: critical\s+CA:FALSE/);
    assert.match(leaf, /Extended Key Usage:\s+TLS Web Server Authentication/);
    assert.match(
      leaf,
      /DNS:localhost, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1/,
    );
    assert.match(leaf, /ASN1 OID: prime256v1/);
    assert.equal(await lifetime(`${dir}/localhost.pem`), 14 * 86_400);
    const ca = await openssl("x509", "-in", `${dir}/ca.pem`, "-noout", "-text");
    assert.match(ca, /Basic Constraints: critical\s+CA:TRUE/);
    assert.match(
      ca,
      /Name Constraints: critical\s+Permitted:\s+DNS:localhost\s+IP:127\.0\.0\.0\/255\.0\.0\.0/,
    );
    // The next steps are printed, for every platform, and none is run.
    for (
      const step of [
        `--cert ${dir}/localhost.pem --key ${dir}/localhost.key`,
        `--cacert ${dir}/ca.pem`,
        `curl --cacert ${dir}/ca.pem`,
        "update-ca-certificates",
        "security add-trusted-cert",
        "certutil -addstore -f Root",
        "certutil -d sql:",
      ]
    ) assert.ok(output.stdout.includes(step), step);
  },
);

folderTest(
  "make_cert.ts never overwrites; --force replaces the leaf and keeps the CA",
  async (dir) => {
    assert.equal((await makeCert(dir)).code, 0);
    const read = (name: string) => Deno.readTextFile(`${dir}/${name}`);
    const [ca, leaf] = [await read("ca.pem"), await read("localhost.pem")];
    const again = await makeCert(dir);
    assert.equal(again.code, 1);
    assert.match(
      again.stderr,
      /^make_cert\.ts: .*localhost\.pem exists; --force replaces it \(the CA is kept\)\n$/,
    );
    assert.equal(await read("localhost.pem"), leaf);
    const forced = await makeCert(dir, ["--force", "--days", "30"]);
    assert.equal(forced.code, 0, forced.stderr);
    assert.match(forced.stdout, /^Kept the CA/);
    assert.match(
      forced.stdout,
      /Over 14 days: browsers refuse it for WebTransport/,
    );
    assert.equal(await read("ca.pem"), ca);
    assert.notEqual(await read("localhost.pem"), leaf);
    assert.equal(await lifetime(`${dir}/localhost.pem`), 30 * 86_400);
    assert.match(
      await openssl(
        "verify",
        "-CAfile",
        `${dir}/ca.pem`,
        `${dir}/localhost.pem`,
      ),
      /OK/,
    );
    // Half a CA is refused rather than guessed at.
    await Deno.remove(`${dir}/ca.key`);
    const half = await makeCert(dir, ["--force"]);
    assert.equal(half.code, 1);
    assert.match(half.stderr, /has only one of ca\.pem and ca\.key\n$/);
  },
);

folderTest(
  "make_cert.ts: bad options exit 2, no openssl or no permission exits 1, one line each",
  async (dir) => {
    for (
      const args of [["--days", "0"], ["--days", "x"], ["extra"], ["--bogus"]]
    ) {
      const output = await makeCert(dir, args);
      assert.equal(output.code, 2, args.join(" "));
      assert.equal(
        output.stderr.trimEnd().split("\n").length,
        2,
        output.stderr,
      );
    }
    const help = await makeCert(dir, ["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /^Usage: make_cert\.ts/);
    const empty = await Deno.makeTempDir();
    try {
      const output = await makeCert(`${dir}/a`, [], { PATH: empty });
      assert.equal(output.code, 1);
      assert.match(
        output.stderr,
        /^make_cert\.ts: openssl not found; install it/m,
      );
      assert.doesNotMatch(output.stderr, /^\s+at /m);
    } finally {
      await Deno.remove(empty);
    }
    const outside = await runScript("make_cert.ts", [`${dir}/b`], {
      allow: ["--allow-run=openssl", "--allow-read=.", "--allow-write=."],
    });
    assert.equal(outside.code, 1);
    assert.match(outside.stderr, /^make_cert\.ts: missing permission: .*\n$/);
  },
);

folderTest(
  "make_cert.ts: an openssl that never ends is stopped after 20 s, one line naming the step",
  async (dir) => {
    // A stand-in for a stuck openssl, first in PATH (sleep is the real one).
    await Deno.mkdir(`${dir}/bin`);
    await Deno.writeTextFile(
      `${dir}/bin/openssl`,
      "#!/bin/sh\nPATH=/usr/bin:/bin exec sleep 60\n",
      { mode: 0o755 },
    );
    const started = performance.now();
    const output = await runScript("make_cert.ts", [`${dir}/certs`], {
      allow: [
        "--allow-run=openssl",
        `--allow-read=${dir}`,
        `--allow-write=${dir}`,
      ],
      env: { PATH: `${dir}/bin` },
      timeoutMs: 50_000,
    });
    const took = performance.now() - started;
    assert.equal(output.code, 1, output.stderr);
    assert.match(
      output.stderr,
      /^make_cert\.ts: .*openssl genpkey timed out after 20 s; stopped it\n$/,
    );
    assert.ok(took >= 19_000 && took < 45_000, `exited after ${took} ms`);
  },
);

folderTest(
  "the certificates work with curl and openssl s_client, by name and by IP",
  async (dir) => {
    const files = await makeCertificates({ dir });
    const [cert, key] = await Promise.all(
      [files.cert, files.key].map((f) => Deno.readTextFile(f)),
    );
    await using server = Deno.serve(
      { hostname: "127.0.0.1", port: 0, cert, key, onListen() {} },
      () => new Response("trusted\n"),
    );
    const port = server.addr.port;
    if (await hasCommand("curl")) {
      for (const host of ["127.0.0.1", "localhost"]) {
        const curl = await runTool("curl", [
          "-sS",
          "--cacert",
          files.caCert,
          "--resolve",
          `localhost:${port}:127.0.0.1`,
          `https://${host}:${port}/`,
        ]);
        assert.equal(curl.code, 0, curl.stderr);
        assert.equal(decoder.decode(curl.stdout), "trusted\n");
      }
    } else skipBecause("curl is not installed");
    const s_client = await runTool("openssl", [
      "s_client",
      "-connect",
      `127.0.0.1:${port}`,
      "-CAfile",
      files.caCert,
      "-verify_hostname",
      "localhost",
      "-verify_return_error",
      "-brief",
    ], "");
    assert.equal(s_client.code, 0, s_client.stderr);
    assert.match(s_client.stderr, /Verification: OK/);
  },
);

folderTest(
  "the CA's name constraints: a leaf it signs for another name is refused",
  async (dir) => {
    const files = await makeCertificates({ dir, names: ["DNS:example.com"] });
    const verify = await runTool("openssl", [
      "verify",
      "-CAfile",
      files.caCert,
      files.cert,
    ]);
    assert.notEqual(verify.code, 0);
    assert.match(
      decoder.decode(verify.stdout) + verify.stderr,
      /permitted subtree violation/,
    );
    // And by rustls (Deno's TLS), here through QUIC, which can name a server.
    const [cert, key, ca] = await Promise.all(
      [files.cert, files.key, files.caCert].map((f) => Deno.readTextFile(f)),
    );
    const endpoint = new Deno.QuicEndpoint({ hostname: "127.0.0.1", port: 0 });
    const listener = endpoint.listen({ cert, key, alpnProtocols: ["test"] });
    const accepting = listener.incoming()
      .then((incoming) => incoming.accept())
      .catch(() => {});
    try {
      await assert.rejects(
        Deno.connectQuic<false>({
          hostname: "127.0.0.1",
          port: endpoint.addr.port,
          serverName: "example.com",
          alpnProtocols: ["test"],
          caCerts: [ca],
        }),
        /NameConstraint|name constraint/i,
      );
    } finally {
      await accepting;
      endpoint.close();
    }
  },
);

Deno.test("helpers.makeTestCerts: PEM text and paths agree, options pass through, cleanup removes all", async () => {
  if (!HAVE_OPENSSL) return skipBecause("openssl is not installed");
  let dir: string;
  {
    await using certs = await makeTestCerts();
    dir = certs.dir;
    assert.equal(await Deno.readTextFile(certs.certFile), certs.cert);
    assert.equal(await Deno.readTextFile(certs.keyFile), certs.key);
    assert.equal(await Deno.readTextFile(certs.caFile), certs.ca);
    assert.equal(await Deno.readTextFile(certs.otherCaFile), certs.otherCa);
    assert.notEqual(certs.otherCa, certs.ca);
    const wrong = await runTool("openssl", [
      "verify",
      "-CAfile",
      certs.otherCaFile,
      certs.certFile,
    ]);
    assert.notEqual(wrong.code, 0, "the other CA must not verify the leaf");
    await using expired = await makeTestCerts({ days: -1 });
    const verify = await runTool("openssl", [
      "verify",
      "-CAfile",
      expired.caFile,
      expired.certFile,
    ]);
    assert.match(decoder.decode(verify.stdout) + verify.stderr, /expired/);
  }
  await assert.rejects(Deno.stat(dir), Deno.errors.NotFound);
});
