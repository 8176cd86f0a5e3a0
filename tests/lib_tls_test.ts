// lib/tls.ts: the --cert/--key and --tls/--cacert/--client-cert/--client-key
// option blocks and the loading of their PEM files: which mistakes are usage
// errors (exit 2) and which are failures (exit 1), and that what they load
// really speaks TLS over loopback.
import assert from "node:assert/strict";
import { parseCommandLine } from "../lib/cli.ts";
import { dial } from "../lib/dial.ts";
import { Failure, UsageError } from "../lib/errors.ts";
import { serveTcp } from "../lib/server.ts";
import {
  CLIENT_TLS_HELP,
  CLIENT_TLS_OPTIONS,
  loadClientTls,
  loadServerTls,
  SERVER_TLS_HELP,
  SERVER_TLS_OPTIONS,
} from "../lib/tls.ts";
import { hasCommand, makeTestCerts, runTool, skipBecause } from "./helpers.ts";

// Deno 2.8+ runs tests without the op and resource sanitizers unless asked:
// a leaked socket, timer or pending read must fail these tests.
Deno.test.sanitizer({ ops: true, resources: true });

const hasOpenssl = await hasCommand("openssl");
if (!hasOpenssl) {
  skipBecause(
    "openssl not installed: lib/tls.ts tests with certificates ignored",
  );
}

/** The rejection of `promise`, which must reject. */
async function rejection(promise: Promise<unknown>): Promise<Error> {
  try {
    await promise;
  } catch (error) {
    return error as Error;
  }
  assert.fail("did not reject");
}

Deno.test("loadServerTls: neither option is plain TCP; one without the other is a usage error", async () => {
  assert.equal(await loadServerTls({}), undefined);
  for (const values of [{ cert: "a.pem" }, { key: "a.key" }]) {
    const error = await rejection(loadServerTls(values));
    assert.ok(error instanceof UsageError, String(error));
    assert.equal(
      error.message,
      "--cert and --key go together: give both or neither",
    );
  }
});

Deno.test("loadServerTls: a missing file, a directory and a non-PEM file are Failures naming them", async () => {
  const dir = await Deno.makeTempDir({ prefix: "lib-tls-test-" });
  try {
    const text = `${dir}/not-pem.txt`;
    await Deno.writeTextFile(text, "just some text\n");
    const pemLike = `${dir}/ok.pem`;
    await Deno.writeTextFile(
      pemLike,
      "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n",
    );

    const missing = await rejection(
      loadServerTls({ cert: `${dir}/nope.pem`, key: pemLike }),
    );
    assert.ok(missing instanceof Failure && !(missing instanceof UsageError));
    assert.equal(
      missing.message,
      `cannot read --cert ${dir}/nope.pem: no such file`,
    );

    const missingKey = await rejection(
      loadServerTls({ cert: pemLike, key: `${dir}/nope.key` }),
    );
    assert.equal(
      missingKey.message,
      `cannot read --key ${dir}/nope.key: no such file`,
    );

    const notPem = await rejection(loadServerTls({ cert: text, key: pemLike }));
    assert.ok(notPem instanceof Failure);
    assert.equal(notPem.message, `--cert ${text} is not a PEM file`);

    const directory = await rejection(
      loadServerTls({ cert: pemLike, key: dir }),
    );
    assert.ok(directory instanceof Failure);
    assert.match(
      directory.message,
      new RegExp(`^cannot read --key ${dir}: .+`),
    );
    assert.ok(!directory.message.includes("\n"));

    const binary = `${dir}/binary.der`;
    await Deno.writeFile(
      binary,
      new Uint8Array([0x30, 0x82, 0xff, 0x00, 0x80]),
    );
    const der = await rejection(loadServerTls({ cert: binary, key: pemLike }));
    assert.ok(der instanceof Failure, String(der));
    assert.ok(!der.message.includes("\n"));
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadServerTls without read permission: a Failure that names the flag", async () => {
  const tls = new URL("../lib/tls.ts", import.meta.url).href;
  const code = `
    import { loadServerTls } from "${tls}";
    try {
      await loadServerTls({ cert: "/etc/hostname", key: "/etc/hostname" });
    } catch (error) {
      console.log(error.constructor.name + ": " + error.message);
    }
  `;
  const result = await runTool(Deno.execPath(), [
    "run",
    "--allow-read=/nonexistent",
    "-",
  ], code);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(
    new TextDecoder().decode(result.stdout),
    "Failure: cannot read --cert /etc/hostname: needs --allow-read=/etc/hostname\n",
  );
});

Deno.test("loadClientTls: off unless asked; --tls alone trusts the system CAs", async () => {
  assert.equal(await loadClientTls({}), undefined);
  assert.equal(await loadClientTls({ tls: false }), undefined);
  assert.deepEqual(await loadClientTls({ tls: true }), {
    caCerts: undefined,
    cert: undefined,
    key: undefined,
  });
});

Deno.test("loadClientTls: the client pair goes together", async () => {
  for (
    const values of [
      { "client-cert": "c.pem" },
      { "client-key": "c.key" },
      { tls: true, "client-cert": "c.pem" },
    ]
  ) {
    const error = await rejection(loadClientTls(values));
    assert.ok(error instanceof UsageError, String(error));
    assert.equal(
      error.message,
      "--client-cert and --client-key go together: give both or neither",
    );
  }
  const missing = await rejection(
    loadClientTls({ cacert: "/nonexistent/ca.pem" }),
  );
  assert.ok(missing instanceof Failure);
  assert.equal(
    missing.message,
    "cannot read --cacert /nonexistent/ca.pem: no such file",
  );
});

Deno.test({
  name:
    "loadClientTls: --cacert implies TLS; a client pair implies TLS; the PEM text is loaded",
  ignore: !hasOpenssl,
  async fn() {
    await using certs = await makeTestCerts();
    assert.deepEqual(await loadClientTls({ cacert: certs.caFile }), {
      caCerts: [certs.ca],
      cert: undefined,
      key: undefined,
    });
    assert.deepEqual(
      await loadClientTls({
        "client-cert": certs.certFile,
        "client-key": certs.keyFile,
      }),
      { caCerts: undefined, cert: certs.cert, key: certs.key },
    );
    assert.deepEqual(
      await loadClientTls({
        tls: true,
        cacert: certs.caFile,
        "client-cert": certs.certFile,
        "client-key": certs.keyFile,
      }),
      { caCerts: [certs.ca], cert: certs.cert, key: certs.key },
    );
    assert.deepEqual(
      await loadServerTls({ cert: certs.certFile, key: certs.keyFile }),
      {
        cert: certs.cert,
        key: certs.key,
      },
    );
  },
});

Deno.test({
  name:
    "what loadServerTls and loadClientTls load speaks TLS over loopback (serveTcp + dial)",
  ignore: !hasOpenssl,
  async fn() {
    await using certs = await makeTestCerts();
    const serverTls = await loadServerTls({
      cert: certs.certFile,
      key: certs.keyFile,
    });
    await using server = serveTcp(
      { hostname: "127.0.0.1", port: 0, tls: serverTls },
      async (conn) => {
        await conn.write(new TextEncoder().encode("secret hello\n"));
      },
    );
    const clientTls = await loadClientTls({ cacert: certs.caFile });
    const conn = await dial({
      hostname: "127.0.0.1",
      port: server.addr.port,
      timeoutMs: 10_000,
      tls: clientTls,
    });
    const buffer = new Uint8Array(64);
    let text = "";
    for (let count; (count = await conn.read(buffer)) !== null;) {
      text += new TextDecoder().decode(buffer.subarray(0, count));
    }
    conn.close();
    assert.equal(text, "secret hello\n");
  },
});

Deno.test("the option blocks parse as their help says", () => {
  const parsed = parseCommandLine(
    [
      "--cert",
      "c.pem",
      "--key",
      "k.pem",
      "--cacert",
      "ca.pem",
      "--client-cert",
      "cc",
      "--client-key",
      "ck",
    ],
    { usage: "x", options: { ...SERVER_TLS_OPTIONS, ...CLIENT_TLS_OPTIONS } },
  );
  assert.deepEqual({ ...parsed.values }, {
    cert: "c.pem",
    key: "k.pem",
    cacert: "ca.pem",
    "client-cert": "cc",
    "client-key": "ck",
    tls: false,
  });
  for (const option of Object.keys(SERVER_TLS_OPTIONS)) {
    assert.match(SERVER_TLS_HELP, new RegExp(`--${option} `));
  }
  for (const option of Object.keys(CLIENT_TLS_OPTIONS)) {
    assert.match(CLIENT_TLS_HELP, new RegExp(`--${option} `));
  }
});
