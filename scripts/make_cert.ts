/**
 * Makes a local certificate authority and a `localhost` certificate signed by
 * it (with openssl), so the TLS and QUIC servers here can be tried for real.
 *
 * Run:    deno task cert [DIR]        (default DIR: ./certs)
 *    or:  deno run --allow-run=openssl --allow-read=. --allow-write=. scripts/make_cert.ts [DIR]
 * Try it: deno run --unstable-net --allow-net --allow-read=certs scripts/quic_server.ts --cert certs/localhost.pem --key certs/localhost.key
 *
 * Beyond the tutorials: 000 §1 lists SSL/TLS among what to learn, and says
 * sockets authenticate both ends before they talk; a socket authenticates
 * nobody. A certificate is how a server proves its name. Why two and not one
 * self-signed: a client trusts a CA, not a server, and rustls (Deno's TLS)
 * rejects a certificate that is its own CA. So: ca.pem (CA:TRUE, may only
 * sign, and its name constraints let it vouch for localhost and loopback
 * only, so trusting it helps nobody impersonate another site even if ca.key
 * leaks) and localhost.pem (CA:FALSE, serverAuth, ECDSA P-256, names
 * localhost, 127.0.0.1 and ::1), which the servers present. The leaf lives
 * 14 days by default: the most a browser accepts for WebTransport's
 * serverCertificateHashes. Running again keeps the CA you trusted and, with
 * --force, replaces only the leaf.
 *
 * Read first: makeCertificates
 */
import {
  Failure,
  parseCommandLine,
  parseInteger,
  runCommand,
  UsageError,
} from "../lib/cli.ts";

const USAGE = `Usage: make_cert.ts [--days N] [--force] [DIR]

Writes DIR/ca.pem, DIR/ca.key (a local CA) and DIR/localhost.pem,
DIR/localhost.key (signed by it, for localhost, 127.0.0.1 and ::1), then
prints how to use and trust them. An existing CA in DIR is reused.

Options:
  --days N    days the localhost certificate is valid (default 14; over 14,
              browsers refuse it for WebTransport certificate hashes)
  --force     replace an existing localhost certificate (never the CA)
  -h, --help  show this help

A DIR outside this folder needs its own permissions: deno run
--allow-run=openssl --allow-read=DIR --allow-write=DIR scripts/make_cert.ts DIR`;

/** What a leaf certificate names by default, in openssl's SAN syntax. */
export const LOCAL_NAMES = ["DNS:localhost", "IP:127.0.0.1", "IP:::1"];

// The CA may only sign for these: localhost (and *.localhost), 127.0.0.0/8
// and ::1. Checked by every verifier that matters: rustls, browsers, NSS.
const PERMITTED = [
  "permitted;DNS:localhost",
  "permitted;IP:127.0.0.0/255.0.0.0",
  "permitted;IP:::1/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
].join(", ");

export interface CertificateOptions {
  /** Folder for the four files; created (mode 0700) if missing. */
  dir: string;
  /** Days the leaf is valid (default 14). Tests pass -1 for an expired one. */
  days?: number;
  /** The leaf's names (default LOCAL_NAMES); must fit the CA's constraints. */
  names?: string[];
  /** Replace an existing leaf. The CA is never replaced. */
  force?: boolean;
}

/**
 * The recipe. Keys are written by us (mode 0600, never over an existing
 * file) and read by openssl, which prints certificates to stdout.
 */
export async function makeCertificates(options: CertificateOptions) {
  const { dir, days = 14, names = LOCAL_NAMES, force = false } = options;
  const [caCert, caKey] = [`${dir}/ca.pem`, `${dir}/ca.key`];
  const [cert, key] = [`${dir}/localhost.pem`, `${dir}/localhost.key`];
  await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const madeCa = !(await exists(caCert));
  if (madeCa === await exists(caKey)) {
    throw new Failure(`${dir} has only one of ca.pem and ca.key`);
  }
  for (const path of [cert, key]) {
    if (!(await exists(path))) continue;
    if (!force) {
      throw new Failure(`${path} exists; --force replaces it (the CA is kept)`);
    }
    await Deno.remove(path);
  }
  // openssl takes extensions from a file only: a short-lived one beside the
  // keys, in the one folder we may write to.
  const config = await Deno.makeTempFile({ dir, suffix: ".cnf" });
  try {
    await Deno.writeTextFile(config, opensslConfig(names));
    if (madeCa) {
      await writeKey(caKey, await openssl(["genpkey", ...P256]));
      const pem = await openssl([
        ...["req", "-x509", "-new", "-key", caKey, "-sha256"],
        ...["-subj", `/CN=Local development CA ${randomHex(4)}`],
        ...["-days", "3650", "-set_serial", `0x${randomHex(16)}`],
        ...["-config", config, "-extensions", "ca"],
      ]);
      await Deno.writeTextFile(caCert, pem, { createNew: true });
    }
    await writeKey(key, await openssl(["genpkey", ...P256]));
    // A certificate request (the public key plus a name, signed by the key),
    // then the CA's signature over it with the leaf's extensions.
    const request = await openssl([
      ...["req", "-new", "-key", key, "-subj", "/CN=localhost"],
      ...["-config", config],
    ]);
    const pem = await openssl([
      ...["x509", "-req", "-CA", caCert, "-CAkey", caKey, "-sha256"],
      ...["-days", `${days}`, "-set_serial", `0x${randomHex(16)}`],
      ...["-extfile", config, "-extensions", "leaf"],
    ], request);
    await Deno.writeTextFile(cert, pem, { createNew: true });
  } finally {
    await Deno.remove(config).catch(() => {});
  }
  // The CA's name, for the commands that remove it from a trust store.
  const subject = await openssl(
    ["x509", "-in", caCert, "-noout", "-subject", "-nameopt", "RFC2253"],
  );
  const caName = /CN=([^,\n]*)/.exec(subject)?.[1] ?? "";
  return { caCert, caKey, cert, key, madeCa, caName };
}

const P256 = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];

function opensslConfig(names: string[]): string {
  return `[req]
distinguished_name = subject
[subject]
[ca]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
nameConstraints = critical, ${PERMITTED}
[leaf]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = ${names.join(", ")}
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
`;
}

/** Runs openssl with `input` on stdin; its stdout, or a Failure naming the
 * step. Bounded like any wait: the signal stops openssl after 20 s. */
async function openssl(args: string[], input = ""): Promise<string> {
  const signal = AbortSignal.timeout(20_000);
  const pipes = { stdin: "piped", stdout: "piped", stderr: "piped" } as const;
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command("openssl", { args, signal, ...pipes }).spawn();
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    throw new Failure("openssl not found; install it (apt install openssl)");
  }
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(input));
  await writer.close();
  const { success, stdout, stderr } = await child.output();
  const [out, err] = [stdout, stderr].map((b) => new TextDecoder().decode(b));
  if (signal.aborted) {
    throw new Failure(`openssl ${args[0]} timed out after 20 s; stopped it`);
  }
  if (!success) {
    throw new Failure(
      `openssl ${args[0]} failed: ${err.trim().split("\n")[0]}`,
    );
  }
  return out;
}

/** A private key: readable by its owner only, and never over another file. */
function writeKey(path: string, pem: string) {
  return Deno.writeTextFile(path, pem, { mode: 0o600, createNew: true });
}

function exists(path: string): Promise<boolean> {
  return Deno.lstat(path).then(() => true, (error) => {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  });
}

function randomHex(bytes: number): string {
  const random = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(random, (b) => b.toString(16).padStart(2, "0")).join("");
}

/** The next steps, printed for a person to run (this script runs none). */
function nextSteps(
  files: Awaited<ReturnType<typeof makeCertificates>>,
  days: number,
): string {
  const { caCert, caKey, cert, key, caName } = files;
  const until = new Date(Date.now() + days * 86_400_000).toISOString();
  const crt = "/usr/local/share/ca-certificates/local-development-ca.crt";
  const keychain = "/Library/Keychains/System.keychain";
  const nss = "certutil -d sql:PROFILE";
  const made = files.madeCa ? "Made" : "Kept";
  return [
    `${made} the CA ${caCert} (keep ${caKey} private)`,
    `Made ${cert} and ${key}, valid until ${until.slice(0, 10)}`,
    ...(days > 14
      ? ["Over 14 days: browsers refuse it for WebTransport."]
      : []),
    "",
    "Use them (the TLS servers take the same --cert and --key):",
    `  deno run --unstable-net --allow-net --allow-read=${cert},${key} scripts/quic_server.ts --cert ${cert} --key ${key}`,
    `  deno run --unstable-net --allow-net --allow-read=${caCert} scripts/quic_client.ts --cacert ${caCert} hello`,
    `  curl --cacert ${caCert} https://localhost:8000/`,
    `  DENO_CERT=${caCert} (Deno) or NODE_EXTRA_CA_CERTS=${caCert} (Node) trust it too`,
    "",
    "Or trust the CA everywhere on this machine (the second line undoes it):",
    `  Debian/Ubuntu: sudo cp ${caCert} ${crt} && sudo update-ca-certificates`,
    `                 sudo rm ${crt} && sudo update-ca-certificates --fresh`,
    `  macOS:   sudo security add-trusted-cert -d -r trustRoot -k ${keychain} ${caCert}`,
    `           sudo security delete-certificate -c "${caName}" ${keychain}`,
    `  Windows (as administrator): certutil -addstore -f Root ${caCert}`,
    `           certutil -delstore Root "${caName}"`,
    "  Firefox, and Chromium on Linux, have their own list (NSS); PROFILE is",
    "  the Firefox profile folder, or $HOME/.pki/nssdb for Chromium:",
    `           ${nss} -A -t C,, -n local-development-ca -i ${caCert}`,
    `           ${nss} -D -n local-development-ca`,
    "  Deno reads the system's list only with DENO_TLS_CA_STORE=system.",
  ].join("\n");
}

if (import.meta.main) {
  await runCommand("make_cert.ts", async () => {
    const { values, positionals } = parseCommandLine(Deno.args, {
      usage: USAGE,
      positionals: true,
      options: {
        days: { type: "string", default: "14" },
        force: { type: "boolean", default: false },
      },
    });
    const [dir = "certs", extra] = positionals;
    if (extra) throw new UsageError(`unexpected argument '${extra}'`);
    const days = parseInteger(values.days, "--days", 1, 825);
    const files = await makeCertificates({ dir, days, force: values.force });
    console.log(nextSteps(files, days));
  });
}
