// lib/file_store.ts: the name rules, and the store's promises on a real
// directory: nothing visible before commit, the whole file after it, the
// right sha256, nothing left behind by an abort, exactly one winner when two
// uploads of one name race, and nothing written outside the directory.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import {
  createUpload,
  FileExistsError,
  fileNameProblem,
  prepareUploadDir,
  UnsafeNameError,
} from "../lib/file_store.ts";
import { Failure } from "../lib/errors.ts";
import { randomBytes } from "./helpers.ts";

// Deno 2.8+ runs tests without the op and resource sanitizers unless asked:
// a leaked socket, timer or pending read must fail these tests.
Deno.test.sanitizer({ ops: true, resources: true });

const TEMP_NAME = /^\.upload-[0-9a-f]{32}\.tmp$/;
const MAX_NAME_BYTES = 255;

/** Whether `dir` holds an entry `name` (a dangling symbolic link too). */
async function fileExists(dir: string, name: string): Promise<boolean> {
  return await Deno.lstat(`${dir}/${name}`).then(() => true, () => false);
}

/** A fresh temporary directory, removed on dispose. */
async function tempDir() {
  const path = await Deno.makeTempDir({ prefix: "lib-file-store-test-" });
  return {
    path,
    [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }),
  };
}

async function names(dir: string): Promise<string[]> {
  const found: string[] = [];
  for await (const entry of Deno.readDir(dir)) found.push(entry.name);
  return found.sort();
}

function sha256(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

Deno.test("fileNameProblem: plain names pass", () => {
  for (
    const name of [
      "a",
      "report.pdf",
      "with spaces and (parens).txt",
      ".hidden",
      "...",
      "..a",
      "a..b",
      "中文名.txt",
      "emoji 😀.png",
      "café",
      "-dash-first",
      "x".repeat(MAX_NAME_BYTES),
      "é".repeat(127) + "x", // 255 bytes in UTF-8
      ".upload-123.tmp", // not the temporary shape
    ]
  ) {
    assert.equal(fileNameProblem(name), null, name);
  }
});

Deno.test("fileNameProblem: each unsafe name with its reason; createUpload refuses it", async () => {
  await using dir = await tempDir();
  const cases: [string, string][] = [
    ["", "empty file name"],
    [" ", "file name must not be only whitespace"],
    ["\u3000\u00a0\t", "file name must not be only whitespace"],
    [".", "file name '.' not allowed"],
    ["..", "file name '..' not allowed"],
    ["a/b", "file name must not contain '/' or '\\'"],
    ["../etc/passwd", "file name must not contain '/' or '\\'"],
    ["/abs", "file name must not contain '/' or '\\'"],
    ["a\\b", "file name must not contain '/' or '\\'"],
    [
      "..\u2215x",
      "file name must not contain characters that look like '/' or '\\'",
    ],
    [
      "a\u2044b",
      "file name must not contain characters that look like '/' or '\\'",
    ],
    [
      "a\uff0fb",
      "file name must not contain characters that look like '/' or '\\'",
    ],
    [
      "a\uff3cb",
      "file name must not contain characters that look like '/' or '\\'",
    ],
    [
      "a\u29f8b",
      "file name must not contain characters that look like '/' or '\\'",
    ],
    ["line\nbreak", "file name must not contain control characters"],
    ["nul\0", "file name must not contain control characters"],
    ["esc\x1b[2J", "file name must not contain control characters"],
    ["del\x7f", "file name must not contain control characters"],
    ["c1\u0085", "file name must not contain control characters"],
    [
      "invoice\u202etxt.exe",
      "file name must not contain invisible formatting characters (bidi, zero-width)",
    ],
    [
      "zero\u200bwidth",
      "file name must not contain invisible formatting characters (bidi, zero-width)",
    ],
    [
      "\ufeffbom",
      "file name must not contain invisible formatting characters (bidi, zero-width)",
    ],
    [
      "x".repeat(MAX_NAME_BYTES + 1),
      `file name longer than ${MAX_NAME_BYTES} bytes`,
    ],
    ["é".repeat(128), `file name longer than ${MAX_NAME_BYTES} bytes`],
    [
      ".upload-0123456789abcdef0123456789abcdef.tmp",
      "file name reserved for temporary files",
    ],
  ];
  for (const [name, reason] of cases) {
    assert.equal(fileNameProblem(name), reason, JSON.stringify(name));
    await assert.rejects(
      createUpload(dir.path, name),
      (error: unknown) =>
        error instanceof UnsafeNameError && error.message === reason,
    );
  }
});

Deno.test("createUpload: nothing under the name before commit, the whole file after, sha256 right", async () => {
  await using dir = await tempDir();
  const content = randomBytes(300_000);
  const upload = await createUpload(dir.path, "data.bin");
  assert.equal(upload.name, "data.bin");
  // Write it in uneven pieces; the name must not appear meanwhile.
  for (let offset = 0; offset < content.length; offset += 77_777) {
    await upload.write(content.subarray(offset, offset + 77_777));
    assert.equal(await fileExists(dir.path, "data.bin"), false);
  }
  assert.equal(upload.size, content.length);
  const listing = await names(dir.path);
  assert.equal(listing.length, 1);
  assert.match(listing[0], TEMP_NAME);
  const stored = await upload.commit();
  const realDir = await Deno.realPath(dir.path);
  assert.deepEqual(stored, {
    name: "data.bin",
    path: `${realDir}/data.bin`,
    size: content.length,
    sha256: sha256(content),
  });
  assert.deepEqual(await names(dir.path), ["data.bin"]);
  assert.deepEqual(await Deno.readFile(stored.path), content);
  // Done: more writes or a second commit are refused; abort is harmless.
  await assert.rejects(() => upload.write(new Uint8Array(1)), Error);
  await assert.rejects(() => upload.commit(), Error);
  await upload.abort();
  await upload[Symbol.asyncDispose]();
  assert.deepEqual(await Deno.readFile(stored.path), content);
});

Deno.test("createUpload: an empty file commits too", async () => {
  await using dir = await tempDir();
  const upload = await createUpload(dir.path, "empty");
  const stored = await upload.commit();
  assert.equal(stored.size, 0);
  assert.equal(stored.sha256, sha256(new Uint8Array()));
  assert.equal((await Deno.stat(stored.path)).size, 0);
});

Deno.test("abort, and await using without commit, leave nothing behind", async () => {
  await using dir = await tempDir();
  const upload = await createUpload(dir.path, "half.bin");
  await upload.write(new Uint8Array(1000));
  await upload.abort();
  await upload.abort(); // twice: harmless
  assert.deepEqual(await names(dir.path), []);
  await assert.rejects(() => upload.write(new Uint8Array(1)), Error);
  {
    await using vanishing = await createUpload(dir.path, "vanished.bin");
    await vanishing.write(new Uint8Array(10));
    // The client vanished: the scope ends without commit.
  }
  assert.deepEqual(await names(dir.path), []);
  {
    await using kept = await createUpload(dir.path, "kept.bin");
    await kept.write(new Uint8Array([1, 2, 3]));
    await kept.commit();
  }
  assert.deepEqual(await names(dir.path), ["kept.bin"]);
});

Deno.test("an existing name: refused early, refused at commit, replaced with overwrite", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(`${dir.path}/taken.txt`, "original");
  await assert.rejects(
    () => createUpload(dir.path, "taken.txt"),
    (error: unknown) =>
      error instanceof FileExistsError && error.fileName === "taken.txt" &&
      error.message === "'taken.txt' already exists",
  );
  // Taken while the upload was in progress: commit refuses, cleans up.
  const late = await createUpload(dir.path, "late.txt");
  await late.write(new TextEncoder().encode("mine"));
  await Deno.writeTextFile(`${dir.path}/late.txt`, "theirs");
  await assert.rejects(() => late.commit(), FileExistsError);
  assert.equal(await Deno.readTextFile(`${dir.path}/late.txt`), "theirs");
  assert.deepEqual(await names(dir.path), ["late.txt", "taken.txt"]);
  // A dangling symbolic link counts as taken, and is not followed.
  await Deno.symlink(`${dir.path}/nowhere`, `${dir.path}/link`);
  assert.equal(await fileExists(dir.path, "link"), true);
  await assert.rejects(() => createUpload(dir.path, "link"), FileExistsError);
  // With overwrite: replaced, atomically.
  const replacing = await createUpload(dir.path, "taken.txt", {
    overwrite: true,
  });
  await replacing.write(new TextEncoder().encode("new content"));
  assert.equal(await Deno.readTextFile(`${dir.path}/taken.txt`), "original");
  await replacing.commit();
  assert.equal(await Deno.readTextFile(`${dir.path}/taken.txt`), "new content");
  assert.equal(
    (await names(dir.path)).filter((name) => TEMP_NAME.test(name)).length,
    0,
  );
});

Deno.test("two uploads of one name racing: exactly one wins, the loser leaves no trace", async () => {
  await using dir = await tempDir();
  for (let round = 0; round < 20; round++) {
    const name = `race-${round}.bin`;
    const contents = [randomBytes(50_000), randomBytes(50_000)];
    // Both pass the early check: neither has committed yet.
    const uploads = await Promise.all(
      contents.map(() => createUpload(dir.path, name)),
    );
    await Promise.all(
      uploads.map((upload, index) => upload.write(contents[index])),
    );
    const results = await Promise.allSettled(
      uploads.map((upload) => upload.commit()),
    );
    const won = results.filter((result) => result.status === "fulfilled");
    const lost = results.filter((result) => result.status === "rejected");
    assert.equal(won.length, 1, `round ${round}`);
    assert.equal(lost.length, 1);
    assert.ok(
      (lost[0] as PromiseRejectedResult).reason instanceof FileExistsError,
    );
    const winner = results.indexOf(won[0]);
    assert.deepEqual(
      await Deno.readFile(`${dir.path}/${name}`),
      contents[winner],
    );
  }
  const left = await names(dir.path);
  assert.equal(left.length, 20);
  assert.ok(
    left.every((name) => /^race-\d+\.bin$/.test(name)),
    left.join(", "),
  );
});

Deno.test("createUpload: unsafe names throw before touching the disk; storage errors pass through", async () => {
  await using dir = await tempDir();
  for (const name of ["../escape", "..", "a/b", "x\u202ey", ""]) {
    await assert.rejects(
      () => createUpload(dir.path, name),
      UnsafeNameError,
      name,
    );
  }
  assert.deepEqual(await names(dir.path), []);
  await assert.rejects(
    () => createUpload(`${dir.path}/missing-dir`, "a.txt"),
    Deno.errors.NotFound,
  );
});

Deno.test("a directory reached through a symbolic link: the file lands in the real one", async () => {
  await using dir = await tempDir();
  await Deno.mkdir(`${dir.path}/real`);
  await Deno.symlink(`${dir.path}/real`, `${dir.path}/alias`);
  const upload = await createUpload(`${dir.path}/alias`, "f.txt");
  await upload.write(new TextEncoder().encode("x"));
  const stored = await upload.commit();
  assert.equal(stored.path, `${await Deno.realPath(`${dir.path}/real`)}/f.txt`);
  assert.deepEqual(await names(`${dir.path}/real`), ["f.txt"]);
});

Deno.test("prepareUploadDir removes our temporary files and nothing else, creates a missing dir, refuses a file", async () => {
  await using dir = await tempDir();
  const ours = ".upload-0123456789abcdef0123456789abcdef.tmp";
  const alike = [
    ".upload-0123.tmp",
    "upload-0123456789abcdef0123456789abcdef.tmp",
    ".upload-0123456789ABCDEF0123456789ABCDEF.tmp",
    "keep.txt",
  ];
  await Deno.writeTextFile(`${dir.path}/${ours}`, "crashed");
  for (const name of alike) {
    await Deno.writeTextFile(`${dir.path}/${name}`, "keep");
  }
  // A directory of the temporary shape is not a file: kept.
  const dirShaped = ".upload-ffffffffffffffffffffffffffffffff.tmp";
  await Deno.mkdir(`${dir.path}/${dirShaped}`);
  // An upload in progress has such a file too (hence: call it at start-up).
  const logged: string[] = [];
  await prepareUploadDir(dir.path, (line) => logged.push(line));
  assert.deepEqual(logged, [`removed leftover temporary file ${ours}`]);
  assert.deepEqual(await names(dir.path), [...alike, dirShaped].sort());
  await prepareUploadDir(dir.path, (line) => logged.push(line));
  assert.equal(logged.length, 1);
  // A missing directory is made; a file in its place is one clear Failure.
  await prepareUploadDir(`${dir.path}/new/sub`, (line) => logged.push(line));
  assert.ok((await Deno.stat(`${dir.path}/new/sub`)).isDirectory);
  await assert.rejects(
    prepareUploadDir(`${dir.path}/keep.txt`),
    (error: unknown) =>
      error instanceof Failure &&
      error.message === `--dir ${dir.path}/keep.txt is not a directory`,
  );
});
