// TLS everywhere by two options, said and checked the same way by every
// script: `--cert FILE --key FILE` for a TCP server, `--tls`, `--cacert FILE`
// (and `--client-cert`/`--client-key`) for a TCP client; the PEM files
// loaded for lib/server.ts and lib/dial.ts. Deno cannot yet make a server
// ask for a client certificate (deno#26825): no server here can demand one.
import { Failure, UsageError } from "./errors.ts";
import type { ServerTls } from "./server.ts";

const text = { type: "string" } as const;
export const SERVER_TLS_OPTIONS = { cert: text, key: text } as const;

export const SERVER_TLS_HELP =
  `  --cert FILE        speak TLS with this PEM certificate chain (with --key)
  --key FILE         the PEM private key for --cert
                     (deno task cert makes a local CA and a localhost pair)`;

export const CLIENT_TLS_OPTIONS = {
  tls: { type: "boolean", default: false },
  cacert: text,
  "client-cert": text,
  "client-key": text,
} as const;

export const CLIENT_TLS_HELP =
  `  --tls              connect with TLS (the system's trusted CAs)
  --cacert FILE      also trust the CA certificate(s) in this PEM file (implies --tls)
  --client-cert FILE present this PEM certificate to the server (with --client-key)
  --client-key FILE  the PEM private key for --client-cert`;

/** What a client needs to speak TLS; lib/dial.ts takes it as is. */
export interface ClientTls {
  caCerts?: string[];
  serverName?: string; // what the certificate must name (default: the host)
  cert?: string;
  key?: string;
}

async function readPem(file: string, option: string): Promise<string> {
  const text = await Deno.readTextFile(file).catch((error: Error) => {
    const reason = error instanceof Deno.errors.NotFound
      ? "no such file"
      : error instanceof Deno.errors.NotCapable
      ? `needs --allow-read=${file}`
      : error.message;
    throw new Failure(`cannot read ${option} ${file}: ${reason}`);
  });
  if (!text.includes("-----BEGIN ")) {
    throw new Failure(`${option} ${file} is not a PEM file`);
  }
  return text;
}

/** Whether a pair of options is given; UsageError for one without the other. */
function both(first?: string, second?: string, names = ""): boolean {
  if ((first === undefined) !== (second === undefined)) {
    throw new UsageError(`${names} go together: give both or neither`);
  }
  return first !== undefined;
}

export async function loadServerTls(
  values: { cert?: string; key?: string },
): Promise<ServerTls | undefined> {
  if (!both(values.cert, values.key, "--cert and --key")) return undefined;
  return {
    cert: await readPem(values.cert!, "--cert"),
    key: await readPem(values.key!, "--key"),
  };
}

export async function loadClientTls(values: {
  tls?: boolean;
  cacert?: string;
  "client-cert"?: string;
  "client-key"?: string;
}): Promise<ClientTls | undefined> {
  const { cacert, "client-cert": cert, "client-key": key } = values;
  const presents = both(cert, key, "--client-cert and --client-key");
  if (!values.tls && cacert === undefined && !presents) return undefined;
  return {
    caCerts: cacert === undefined
      ? undefined
      : [await readPem(cacert, "--cacert")],
    cert: presents ? await readPem(cert!, "--client-cert") : undefined,
    key: presents ? await readPem(key!, "--client-key") : undefined,
  };
}
