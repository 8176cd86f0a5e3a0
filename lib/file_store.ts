// Storing uploads from strangers safely, for upload_server and http_server:
// a plain file name only (it cannot point outside the directory, nor pass
// for another); the bytes in a temporary file, named once complete and
// flushed (no half files; a vanished client leaves nothing), in one atomic
// step: link() fails if the name exists, so of two uploads of one name one
// wins ("check, then rename" has a gap where both pass).
import { createHash } from "node:crypto";
import { Failure } from "./errors.ts";
import { closeQuietly, writeAll } from "./io.ts";

const MAX_NAME_BYTES = 255; // what Linux, macOS and Windows all accept
// Hidden, random, of one shape: start-up clean-up finds ours, nothing else.
const TEMP_NAME = /^\.upload-[0-9a-f]{32}\.tmp$/;

export class UnsafeNameError extends Error {} // a 400

/** The name exists and overwriting was not allowed (a 409). */
export class FileExistsError extends Error {
  constructor(readonly fileName: string) {
    super(`'${fileName}' already exists`);
  }
}

/** Why `name` cannot be stored, or null when it is a safe plain file name.
 * The reason is short and fit to send back to the client. */
export function fileNameProblem(name: string): string | null {
  if (name === "") return "empty file name";
  if (name.trim() === "") return "file name must not be only whitespace";
  if (name === "." || name === "..") return `file name '${name}' not allowed`;
  if (/[/\\]/.test(name)) return "file name must not contain '/' or '\\'";
  // Slashes in disguise: "..∕x" (U+2215) reads like a path in a listing.
  if (/[\u2044\u2215\u29f8\u29f9\uff0f\uff3c]/.test(name)) {
    return "file name must not contain characters that look like '/' or '\\'";
  }
  if (/\p{Cc}/u.test(name)) {
    return "file name must not contain control characters";
  }
  // \p{Cf}: a bidi override makes "invoice\u202etxt.exe" display as
  // "invoiceexe.txt"; zero-width ones make two names look the same.
  if (/\p{Cf}/u.test(name)) {
    return "file name must not contain invisible formatting characters (bidi, zero-width)";
  }
  if (new TextEncoder().encode(name).length > MAX_NAME_BYTES) {
    return `file name longer than ${MAX_NAME_BYTES} bytes`;
  }
  if (TEMP_NAME.test(name)) return "file name reserved for temporary files";
  return null;
}

// Whether anything is at `path`, a dangling symbolic link too.
const exists = (path: string) =>
  Deno.lstat(path).then(() => true, (error) => {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  });

/** Starts an upload of `name` into `dir`: UnsafeNameError, FileExistsError
 * (unless overwrite), or a storage error, else the temporary file made. */
export async function createUpload(
  dir: string,
  name: string,
  options: { overwrite?: boolean } = {},
): Promise<Upload> {
  const problem = fileNameProblem(name);
  if (problem !== null) throw new UnsafeNameError(problem);
  // Every path is built from the directory with its links resolved, so the
  // paths we write are inside it by construction (and checked at commit).
  const realDir = await Deno.realPath(dir);
  if (!options.overwrite && await exists(`${realDir}/${name}`)) {
    throw new FileExistsError(name);
  }
  const random = crypto.getRandomValues(new Uint8Array(16));
  const hex = Array.from(random, (b) => b.toString(16).padStart(2, "0"));
  const tempPath = `${realDir}/.upload-${hex.join("")}.tmp`;
  // createNew = O_CREAT|O_EXCL: never opens an existing file, nor follows a
  // symbolic link someone planted under this name.
  const file = await Deno.open(tempPath, { write: true, createNew: true });
  return new Upload(name, realDir, tempPath, file, options.overwrite ?? false);
}

/** An upload in progress: write() the bytes, then commit() or abort(); with
 * `await using`, it is aborted unless committed. */
export class Upload {
  #size = 0;
  #hash = createHash("sha256");
  #done = false; // committed or aborted: the temporary file is gone

  constructor(
    readonly name: string,
    private readonly realDir: string,
    private readonly tempPath: string,
    private file: Deno.FsFile | null,
    private readonly overwrite: boolean,
  ) {}

  get size(): number { // bytes written so far
    return this.#size;
  }

  /** Appends to the file and the hash: a lib/io.ts Writer, for copy(). */
  async write(bytes: Uint8Array): Promise<number> {
    const file = this.#openFile();
    this.#hash.update(bytes);
    await writeAll(file, bytes); // a file, too, may take fewer bytes
    this.#size += bytes.length;
    return bytes.length;
  }

  /** Flushes the file and names it (FileExistsError if taken meanwhile);
   * on any failure the temporary file is gone. Path, size and SHA-256. */
  async commit() {
    const file = this.#openFile();
    const path = `${this.realDir}/${this.name}`;
    try {
      // On disk before it gets its name: after a crash the name holds
      // either nothing or the whole file, never a prefix.
      await file.syncData();
      file.close();
      this.file = null;
      if (fileNameProblem(path.slice(this.realDir.length + 1)) !== null) {
        throw new Error(`refusing to write outside ${this.realDir}`);
      }
      if (this.overwrite) await Deno.rename(this.tempPath, path);
      else {
        await Deno.link(this.tempPath, path).catch((error) => {
          if (!(error instanceof Deno.errors.AlreadyExists)) throw error;
          throw new FileExistsError(this.name);
        });
        await Deno.remove(this.tempPath);
      }
      this.#done = true;
      // The new directory entry itself durable (Windows cannot open one).
      if (Deno.build.os !== "windows") {
        using directory = await Deno.open(this.realDir, { read: true });
        await directory.sync();
      }
    } catch (error) {
      await this.abort();
      throw error;
    }
    const sha256 = this.#hash.digest("hex");
    return { name: this.name, path, size: this.#size, sha256 };
  }

  /** Removes the temporary file; harmless after commit() or a second call. */
  async abort(): Promise<void> {
    if (this.file) closeQuietly(this.file);
    this.file = null;
    if (this.#done) return;
    this.#done = true;
    await Deno.remove(this.tempPath).catch((error) => {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    });
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.abort();
  }

  #openFile(): Deno.FsFile {
    if (!this.file) throw new Error("upload already committed or aborted");
    return this.file;
  }
}

/**
 * Makes `dir` ready at start-up: created if missing (Failure if not a
 * directory), the temporary files a crash left removed and logged. Not
 * while serving: it would remove those of uploads in progress too.
 */
export async function prepareUploadDir(
  dir: string,
  log = (line: string) => console.error(line),
): Promise<void> {
  try {
    if (!(await Deno.stat(dir)).isDirectory) {
      throw new Failure(`--dir ${dir} is not a directory`);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    await Deno.mkdir(dir, { recursive: true });
  }
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && TEMP_NAME.test(entry.name)) {
      await Deno.remove(`${dir}/${entry.name}`);
      log(`removed leftover temporary file ${entry.name}`);
    }
  }
}
