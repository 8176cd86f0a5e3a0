// Storing uploaded files safely, shared by upload_server.ts and
// http_server.ts. Three rules make an upload safe to accept from strangers:
//
// 1. The name is a plain file name: no path separators (nor characters that
//    look like them), no "." or "..", no control or invisible formatting
//    characters, not only whitespace, at most 255 bytes. Then it cannot point
//    anywhere but inside the upload directory, nor pass for another name.
// 2. Bytes go to a temporary file in the same directory and reach their real
//    name only once complete and flushed to disk: a reader never sees half a
//    file, and a client that vanishes leaves nothing behind.
// 3. Putting the file in place is one atomic step. Without overwrite that is
//    link(), which fails if the name exists, so when two uploads of the same
//    name race exactly one wins. ("Check it does not exist, then rename"
//    has a gap between the check and the rename where both can pass.)
import { createHash, type Hash } from "node:crypto";
import { Failure } from "./errors.ts";
import { writeAll } from "./io.ts";

/** Longest file name Linux, macOS and Windows all accept, in UTF-8 bytes. */
export const MAX_NAME_BYTES = 255;

// Temporary files: hidden, with a random part and a fixed shape, so start-up
// clean-up can find ours and nothing else.
const TEMP_PREFIX = ".upload-";
const TEMP_SUFFIX = ".tmp";
const TEMP_NAME = /^\.upload-[0-9a-f]{32}\.tmp$/;

/** The name is not a safe plain file name (an HTTP or upload 400). */
export class UnsafeNameError extends Error {}

/** The name exists and overwriting was not allowed (a 409). */
export class FileExistsError extends Error {
  constructor(readonly fileName: string) {
    super(`'${fileName}' already exists`);
  }
}

export interface UploadOptions {
  /** Replace an existing file of the same name (default: refuse, 409). */
  overwrite?: boolean;
}

/** What commit() reports about the stored file. */
export interface StoredFile {
  name: string;
  /** Absolute path of the file, inside the (resolved) directory. */
  path: string;
  size: number;
  /** SHA-256 of the content, lower-case hex. */
  sha256: string;
}

/** An upload in progress: write() the bytes, then commit() or abort(). */
export interface Upload {
  readonly name: string;
  /** Bytes written so far. */
  readonly size: number;
  /**
   * Appends bytes to the temporary file and to the running hash; resolves
   * to their count, so an Upload is a lib/io.ts Writer (copy() can fill it).
   */
  write(bytes: Uint8Array): Promise<number>;
  /**
   * Flushes the file to disk and puts it in place under its name. Throws
   * FileExistsError if the name was taken meanwhile (the temporary file is
   * removed), or the storage error.
   */
  commit(): Promise<StoredFile>;
  /** Removes the temporary file; harmless after commit() or a second call. */
  abort(): Promise<void>;
  /** Aborts unless committed, so `await using` never leaves a temp file. */
  [Symbol.asyncDispose](): Promise<void>;
}

/**
 * Why `name` cannot be stored, or null when it is a safe plain file name.
 * The reason is short and fit to send back to the client.
 */
export function fileNameProblem(name: string): string | null {
  if (name === "") return "empty file name";
  if (name.trim() === "") return "file name must not be only whitespace";
  if (name === "." || name === "..") return `file name '${name}' not allowed`;
  if (/[/\\]/.test(name)) return "file name must not contain '/' or '\\'";
  // Slashes in disguise: "..∕x" (U+2215) reads like a path in a listing.
  if (/[\u2044\u2215\u29f8\u29f9\uff0f\uff3c]/.test(name)) {
    return "file name must not contain characters that look like '/' or '\\'";
  }
  // \p{Cc}: C0 and C1 control characters, newline and DEL included.
  if (/\p{Cc}/u.test(name)) {
    return "file name must not contain control characters";
  }
  // \p{Cf}: invisible format characters. A bidi override makes
  // "invoice\u202etxt.exe" display as "invoiceexe.txt"; zero-width ones make
  // two different names look the same.
  if (/\p{Cf}/u.test(name)) {
    return "file name must not contain invisible formatting characters (bidi, zero-width)";
  }
  if (new TextEncoder().encode(name).length > MAX_NAME_BYTES) {
    return `file name longer than ${MAX_NAME_BYTES} bytes`;
  }
  if (TEMP_NAME.test(name)) {
    return "file name reserved for temporary files";
  }
  return null;
}

/** Throws UnsafeNameError unless `name` is a safe plain file name. */
export function checkFileName(name: string): void {
  const problem = fileNameProblem(name);
  if (problem !== null) throw new UnsafeNameError(problem);
}

/**
 * Whether `name` already exists in `dir` (any kind of entry, a dangling
 * symbolic link too). For refusing early, before a body is read; commit()
 * checks again atomically.
 */
export async function fileExists(dir: string, name: string): Promise<boolean> {
  checkFileName(name);
  try {
    await Deno.lstat(`${dir}/${name}`);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

/**
 * Starts an upload of `name` into `dir`: checks the name, refuses early with
 * FileExistsError if it exists (unless overwrite), and creates the temporary
 * file. Storage errors (missing or read-only directory…) are thrown as is.
 */
export async function createUpload(
  dir: string,
  name: string,
  options: UploadOptions = {},
): Promise<Upload> {
  checkFileName(name);
  // Resolve symbolic links in the directory once, and build every path from
  // the result: the paths we write are then inside it by construction, and
  // we check that anyway before the file gets its name.
  const realDir = await Deno.realPath(dir);
  const finalPath = `${realDir}/${name}`;
  if (!options.overwrite && await fileExists(realDir, name)) {
    throw new FileExistsError(name);
  }
  const tempPath = `${realDir}/${TEMP_PREFIX}${randomHex(16)}${TEMP_SUFFIX}`;
  // createNew = O_CREAT|O_EXCL: never opens an existing file, nor follows a
  // symbolic link someone planted under this name.
  const file = await Deno.open(tempPath, { write: true, createNew: true });
  return new TempFileUpload(name, realDir, finalPath, tempPath, file, options);
}

class TempFileUpload implements Upload {
  #size = 0;
  #hash: Hash = createHash("sha256");
  #file: Deno.FsFile | null;
  #done = false; // committed or aborted: the temp file is gone

  constructor(
    readonly name: string,
    private readonly realDir: string,
    private readonly finalPath: string,
    private readonly tempPath: string,
    file: Deno.FsFile,
    private readonly options: UploadOptions,
  ) {
    this.#file = file;
  }

  get size(): number {
    return this.#size;
  }

  async write(bytes: Uint8Array): Promise<number> {
    const file = this.#openFile();
    this.#hash.update(bytes);
    // Like a socket, a file may accept fewer bytes than asked.
    await writeAll(file, bytes);
    this.#size += bytes.length;
    return bytes.length;
  }

  async commit(): Promise<StoredFile> {
    const file = this.#openFile();
    try {
      // On disk before it gets its name: after a crash the name holds
      // either nothing or the whole file, never a prefix.
      await file.syncData();
      file.close();
      this.#file = null;
      if (!isDirectChild(this.realDir, this.finalPath)) {
        throw new Error(`refusing to write outside ${this.realDir}`);
      }
      if (this.options.overwrite) {
        await Deno.rename(this.tempPath, this.finalPath);
      } else {
        try {
          await Deno.link(this.tempPath, this.finalPath);
        } catch (error) {
          if (error instanceof Deno.errors.AlreadyExists) {
            throw new FileExistsError(this.name);
          }
          throw error;
        }
        await Deno.remove(this.tempPath);
      }
      this.#done = true;
      await syncDirectory(this.realDir);
    } catch (error) {
      await this.abort();
      throw error;
    }
    return {
      name: this.name,
      path: this.finalPath,
      size: this.#size,
      sha256: this.#hash.digest("hex"),
    };
  }

  async abort(): Promise<void> {
    if (this.#file) {
      try {
        this.#file.close();
      } catch {
        // Already closed.
      }
      this.#file = null;
    }
    if (this.#done) return;
    this.#done = true;
    try {
      await Deno.remove(this.tempPath);
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.abort();
  }

  #openFile(): Deno.FsFile {
    if (!this.#file) throw new Error("upload already committed or aborted");
    return this.#file;
  }
}

/**
 * Makes `dir` ready for uploads: creates it if missing (a Failure if it is
 * not a directory), then removes the temporary files a crashed server left
 * there (see removeLeftoverTempFiles) and returns their names.
 */
export async function prepareUploadDirectory(dir: string): Promise<string[]> {
  try {
    if (!(await Deno.stat(dir)).isDirectory) {
      throw new Failure(`--dir ${dir} is not a directory`);
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
    await Deno.mkdir(dir, { recursive: true });
  }
  return await removeLeftoverTempFiles(dir);
}

/**
 * Removes temporary files a crashed server left in `dir` and returns their
 * names. Call it at start-up, before serving: it would also remove the
 * temporary files of uploads in progress in another server sharing `dir`.
 */
export async function removeLeftoverTempFiles(dir: string): Promise<string[]> {
  const removed: string[] = [];
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isFile && TEMP_NAME.test(entry.name)) {
      await Deno.remove(`${dir}/${entry.name}`);
      removed.push(entry.name);
    }
  }
  return removed;
}

/** Whether `path` is exactly `dir` + "/" + one plain name. */
function isDirectChild(dir: string, path: string): boolean {
  if (!path.startsWith(dir + "/")) return false;
  return fileNameProblem(path.slice(dir.length + 1)) === null;
}

/** Makes the new directory entry itself durable (a rename is in the dir). */
async function syncDirectory(dir: string) {
  if (Deno.build.os === "windows") return; // directories cannot be opened
  using directory = await Deno.open(dir, { read: true });
  await directory.sync();
}

function randomHex(bytes: number): string {
  const random = crypto.getRandomValues(new Uint8Array(bytes));
  return Array.from(random, (byte) => byte.toString(16).padStart(2, "0"))
    .join("");
}

/**
 * Makes `dir` ready for uploads at start-up: creates it if missing (Failure
 * if it is something else), and removes the temporary files a crash left.
 */
export async function prepareUploadDir(
  dir: string,
  log = (line: string) => console.error(line),
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  if (!(await Deno.stat(dir)).isDirectory) {
    throw new Failure(`--dir ${dir} is not a directory`);
  }
  for (const name of await removeLeftoverTempFiles(dir)) {
    log(`removed leftover temporary file ${name}`);
  }
}
