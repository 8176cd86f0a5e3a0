// TLS everywhere by two options. Every TCP server takes `--cert FILE --key
// FILE` and every TCP client `--tls` and `--cacert FILE` (plus a client
// certificate with `--client-cert`/`--client-key`). This module holds those
// option blocks, their help lines and the loading of the PEM files, so that
// echo, chat, upload, http_raw_server, http_server, tcp_proxy and the quic
// scripts (servers), and echo, chat, upload, timeout, multi_connect and
// http_client (clients) all say and check the same thing. The listening and
// dialling themselves are in lib/server.ts and lib/dial.ts.
//
// Deno cannot yet make a server ask clients for a certificate (mutual TLS,
// deno#26825): a client may present one, no server here can demand it.
import { Failure, UsageError } from "./errors.ts";
import type { ServerTls } from "./server.ts";

export const SERVER_TLS_OPTIONS = {
  cert: { type: "string" },
  key: { type: "string" },
} as const;

export const SERVER_TLS_HELP =
  `  --cert FILE        speak TLS with this PEM certificate chain (with --key)
  --key FILE         the PEM private key for --cert
                     (deno task cert makes a local CA and a localhost pair)`;

export const CLIENT_TLS_OPTIONS = {
  tls: { type: "boolean", default: false },
  cacert: { type: "string" },
  "client-cert": { type: "string" },
  "client-key": { type: "string" },
} as const;

export const CLIENT_TLS_HELP =
  `  --tls              connect with TLS (the system's trusted CAs)
  --cacert FILE      also trust the CA certificate(s) in this PEM file (implies --tls)
  --client-cert FILE present this PEM certificate to the server (with --client-key)
  --client-key FILE  the PEM private key for --client-cert`;

/** What a client needs to speak TLS; lib/dial.ts takes it as is. */
export interface ClientTls {
  caCerts?: string[];
  /** The name the server's certificate must carry (default: the host). */
  serverName?: string;
  cert?: string;
  key?: string;
  alpnProtocols?: string[];
}

async function readPem(file: string, option: string): Promise<string> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (error) {
    const reason = error instanceof Deno.errors.NotFound
      ? "no such file"
      : error instanceof Deno.errors.NotCapable
      ? `needs --allow-read=${file}`
      : (error as Error).message;
    throw new Failure(`cannot read ${option} ${file}: ${reason}`);
  }
  if (!text.includes("-----BEGIN ")) {
    throw new Failure(`${option} ${file} is not a PEM file`);
  }
  return text;
}

function both(
  first: string | undefined,
  second: string | undefined,
  names: string,
) {
  if ((first === undefined) !== (second === undefined)) {
    throw new UsageError(`${names} go together: give both or neither`);
  }
  return first !== undefined;
}

/** --cert/--key → the server's TLS settings, or undefined for plain TCP. */
export async function loadServerTls(
  values: { cert?: string; key?: string },
): Promise<ServerTls | undefined> {
  if (!both(values.cert, values.key, "--cert and --key")) return undefined;
  return {
    cert: await readPem(values.cert!, "--cert"),
    key: await readPem(values.key!, "--key"),
  };
}

/** --tls/--cacert/--client-cert/--client-key → ClientTls, or undefined. */
export async function loadClientTls(
  values: {
    tls?: boolean;
    cacert?: string;
    "client-cert"?: string;
    "client-key"?: string;
  },
): Promise<ClientTls | undefined> {
  const clientCert = values["client-cert"], clientKey = values["client-key"];
  const presents = both(
    clientCert,
    clientKey,
    "--client-cert and --client-key",
  );
  if (!values.tls && values.cacert === undefined && !presents) return undefined;
  return {
    caCerts: values.cacert === undefined
      ? undefined
      : [await readPem(values.cacert, "--cacert")],
    cert: presents ? await readPem(clientCert!, "--client-cert") : undefined,
    key: presents ? await readPem(clientKey!, "--client-key") : undefined,
  };
}
