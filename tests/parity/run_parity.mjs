// run_parity.mjs — tokenizer parity: ragd's C tokenizers (tok_dump, public tokenizer.h API only)
// against independent references (oracle.mjs: Hugging Face's Rust `tokenizers`, the JS port
// `@huggingface/tokenizers`, and `js-tiktoken` for GPT-2) on the real vocabularies in
// ../shared/testdata/tokenizers/{gpt2,bert-base-uncased}.
//
// Compared, per request: ids, token type ids, special-token mask, byte offsets, token strings,
// and decoded text (the decoder as is, and with transformers' cleanup), plus GPT-2's exact byte
// round trip and the published vectors of FORMATS.md §8. Requests: tests/parity/texts.jsonl
// (crafted edge cases), paragraphs sampled from moby_dick.txt and sotu.jsonl (read from
// ../shared at run time), whole speeches, pairs, truncation (both directions) and decoding of
// random id sequences.
//
// Rule: ragd must equal every reference on every field that reference produces. The one
// exception is where a JS port disagrees with the Rust library and ragd equals Rust: that is
// listed as a reference deviation and does not fail (FORMATS.md makes Rust normative).
//
//   usage: node tests/parity/run_parity.mjs PATH/TO/tok_dump
//   env:   RAGD_SOURCE_ROOT (default: this file's ../..), RAGD_SHARED (default ROOT/../shared),
//          RAGD_PARITY_FULL=1 (every paragraph of both corpora instead of a sample),
//          RAGD_PARITY_SHOW=N (mismatches printed in full, default 20)
// Exit: 0 all equal, 1 any mismatch or setup error, 77 when ../shared/testdata is absent.
import { spawn } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = process.env.RAGD_SOURCE_ROOT || path.resolve(here, "..", "..");
const shared = process.env.RAGD_SHARED || path.resolve(root, "..", "shared");
const testdata = path.join(shared, "testdata");
if (!fs.existsSync(path.join(testdata, "tokenizers"))) {
  console.log("skipped: ../shared/testdata not found");
  process.exit(77);
}
for (const pkg of ["@huggingface/tokenizers", "js-tiktoken", "tokenizers"]) {
  if (!fs.existsSync(path.join(here, "node_modules", pkg, "package.json"))) {
    console.error(`tokenizer_parity: the reference package ${pkg} is not installed in ${path.join(here, "node_modules")}.\n` +
      `Run: npm ci --prefix ${path.relative(process.cwd(), here) || "."}   (versions pinned by package-lock.json)`);
    process.exit(1);
  }
}
const dump = process.argv[2] || process.env.TOK_DUMP;
if (!dump || !fs.existsSync(dump)) {
  console.error("usage: node run_parity.mjs PATH/TO/tok_dump   (build it first: ninja -C build tests/parity/tok_dump)");
  process.exit(1);
}
const full = process.env.RAGD_PARITY_FULL === "1";
const show = Number(process.env.RAGD_PARITY_SHOW || 20);

// ---- texts ----------------------------------------------------------------------------------
const readJsonl = (file) => fs.readFileSync(file, "utf8").split("\n").filter((l) => l.trim()).map((l) => JSON.parse(l));
const crafted = readJsonl(path.join(here, "texts.jsonl"));
const vectors = readJsonl(path.join(here, "vectors.jsonl"));

// Every k-th element so that about n are taken, spread over the whole list (deterministic).
const spread = (list, n) => (full || list.length <= n ? list : list.filter((_, i) => i % Math.ceil(list.length / n) === 0));

const moby = fs.readFileSync(path.join(testdata, "text", "moby_dick.txt"), "utf8")
  .split(/\n[ \t]*\n/).filter((p) => p.trim());
const speeches = readJsonl(path.join(testdata, "text", "sotu.jsonl"));
// A speech is one long line: cut it into paragraph-sized pieces at sentence ends (~800 bytes).
const sotu = [];
for (const s of speeches) {
  let piece = "";
  for (const sentence of s.text.split(/(?<=[.!?]) +/)) {
    piece += (piece ? " " : "") + sentence;
    if (piece.length >= 800) sotu.push(piece), (piece = "");
  }
  if (piece) sotu.push(piece);
}
const corpus = [
  ...spread(moby, 300).map((a, i) => ({ name: `moby/${i}`, a })),
  ...spread(sotu, 250).map((a, i) => ({ name: `sotu/${i}`, a })),
  // Whole speeches: long inputs (tens of KB) end to end, offsets included.
  ...[0, 116, 232].map((i) => ({ name: `sotu-speech/${speeches[i].id}`, a: speeches[i].text })),
];

// Seeded PRNG (mulberry32) for the random decode requests and pairings.
function rng(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function requestsFor(name) {
  const bert = name !== "gpt2";
  const vocab = bert ? 30522 : 50257;
  const reqs = [];
  const push = (kind, label, req) => reqs.push({ kind, label, req });
  for (const t of crafted) push("crafted", t.name, t.b === undefined ? { a: t.a } : { a: t.a, b: t.b });
  for (const v of vectors.filter((v) => v.tokenizer === name))
    push("vector", v.source, v.b === undefined ? { a: v.a } : { a: v.a, b: v.b });
  for (const c of corpus) push("corpus", c.name, { a: c.a });
  if (bert) for (const t of crafted.filter((t) => t.b === undefined)) push("no-special", t.name, { a: t.a, special: false });
  // Pairs: a crafted text with a real paragraph, and two real paragraphs.
  const R = rng(7);
  const singles = crafted.filter((t) => t.b === undefined && !t.name.startsWith("long/"));
  for (let i = 0; i < 80; i++) {
    const a = i % 2 ? singles[Math.floor(R() * singles.length)].a : corpus[Math.floor(R() * 500)].a;
    const b = corpus[Math.floor(R() * 500)].a;
    push("pair", `pair/${i}`, { a, b });
  }
  // Truncation: singles and pairs, both directions, lengths around the interesting edges.
  const nSpecial = (pair) => (bert ? (pair ? 3 : 2) : 0);
  const truncTexts = [...singles.filter((_, i) => i % 5 === 0).map((t) => t.a), ...corpus.slice(0, 20).map((c) => c.a)];
  for (let i = 0; i < truncTexts.length; i++) {
    const a = truncTexts[i];
    const b = i % 3 === 0 ? undefined : truncTexts[(i * 7 + 3) % truncTexts.length];
    const pair = b !== undefined;
    for (const max of [nSpecial(pair) + 1, nSpecial(pair) + 2, 8, 9, 33, 128, 509]) {
      const direction = (i + max) % 2 ? "left" : "right";
      push("truncation", `trunc/${i}/max=${max}/${direction}`, pair ? { a, b, max_length: max, direction } : { a, max_length: max, direction });
    }
    if (bert && pair) push("truncation", `trunc/${i}/no-special`, { a, b, max_length: 16, special: false });
  }
  // Decoding random id sequences: whole vocabulary, byte tokens (partial UTF-8 for GPT-2),
  // specials, and for BERT the punctuation / "##" region.
  for (let i = 0; i < 150; i++) {
    const n = 1 + Math.floor(R() * 24);
    const ids = [];
    for (let j = 0; j < n; j++) {
      const r = R();
      if (r < 0.1) ids.push(bert ? [0, 100, 101, 102, 103][Math.floor(R() * 5)] : 50256);
      else if (r < 0.45) ids.push(bert ? 999 + Math.floor(R() * 2100) : Math.floor(R() * 256));
      else ids.push(Math.floor(R() * vocab));
    }
    push("decode", `decode/${i}`, { ids });
  }
  push("decode", "decode/empty", { ids: [] });
  return reqs;
}

// ---- running both sides ---------------------------------------------------------------------
function run(cmd, args, input) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ["pipe", "pipe", "pipe"] });
    const out = [], err = [];
    child.stdout.on("data", (d) => out.push(d));
    child.stderr.on("data", (d) => err.push(d));
    child.on("error", reject);
    child.on("close", (code) => {
      if (code !== 0) return reject(new Error(`${path.basename(cmd === process.execPath ? args[0] : cmd)} exited with ${code}: ${Buffer.concat(err)}`));
      resolve(Buffer.concat(out).toString("utf8").split("\n").filter((l) => l).map((l) => JSON.parse(l)));
    });
    child.stdin.end(input);
  });
}

// ---- comparing ------------------------------------------------------------------------------
const FIELDS = ["ids", "type_ids", "special_mask", "offsets", "tokens", "decoded", "decoded_keep"];
const same = (x, y) => JSON.stringify(x) === JSON.stringify(y);
// A window of s around code unit `at`, escaped, never splitting a surrogate pair.
const shorten = (s, at = 0, w = 160) => {
  let from = Math.max(0, at - w / 2), to = Math.min(s.length, from + w);
  if (from > 0 && s.charCodeAt(from) >= 0xdc00 && s.charCodeAt(from) < 0xe000) from--;
  if (to < s.length && s.charCodeAt(to) >= 0xdc00 && s.charCodeAt(to) < 0xe000) to++;
  return (from > 0 ? "…" : "") + JSON.stringify(s.slice(from, to)).slice(1, -1) + (to < s.length ? "…" : "");
};
let passed = 0, tokens = 0, texts = 0, bytes = 0;
const failures = [], deviations = [], ambiguities = [], refDisagree = {};

function describe(name, item, field, ours, theirs, refName) {
  const { req, label, kind } = item;
  const lines = [`MISMATCH ${name} ${field}: ragd vs ${refName}   [${kind} ${label}]`];
  if (req.a !== undefined) lines.push(`  text a (${Buffer.byteLength(req.a)} bytes): "${shorten(req.a)}"`);
  if (req.b !== undefined) lines.push(`  text b (${Buffer.byteLength(req.b)} bytes): "${shorten(req.b)}"`);
  if (req.ids) lines.push(`  ids to decode: ${JSON.stringify(req.ids)}`);
  if (req.max_length) lines.push(`  max_length ${req.max_length}, direction ${req.direction}, special ${req.special !== false}`);
  if (Array.isArray(ours) && Array.isArray(theirs)) {
    let at = 0;
    while (at < ours.length && at < theirs.length && same(ours[at], theirs[at])) at++;
    const where = item.ours.offsets?.[at];
    lines.push(`  first difference at token ${at} of ${ours.length} (ragd) / ${theirs.length} (${refName})` +
      (where && where[0] >= 0 ? `, byte ${where[1]} of text ${where[0] ? "b" : "a"}: "${shorten(where[0] ? req.b : req.a, where[1] - 20 + 80, 80)}"` : ""));
    const win = (arr) => JSON.stringify(arr.slice(Math.max(0, at - 2), at + 8));
    const tok = (arr) => (arr ? " " + win(arr) : "");
    lines.push(`  ragd    : ${win(ours)}${field === "ids" ? tok(item.ours.tokens) : ""}`);
    lines.push(`  ${refName.padEnd(8)}: ${win(theirs)}${field === "ids" ? tok(item.refs[refName]?.tokens) : ""}`);
  } else if (typeof ours === "string" && typeof theirs === "string") {
    let at = 0;
    while (at < ours.length && ours[at] === theirs[at]) at++;
    lines.push(`  first difference at character ${at}:`);
    lines.push(`  ragd    : "${shorten(ours, at, 80)}"`);
    lines.push(`  ${refName.padEnd(8)}: "${shorten(theirs, at, 80)}"`);
  } else {
    lines.push(`  ragd    : ${JSON.stringify(ours)?.slice(0, 300)}`);
    lines.push(`  ${refName.padEnd(8)}: ${JSON.stringify(theirs)?.slice(0, 300)}`);
  }
  lines.push(`  request : ${JSON.stringify(req).slice(0, 400)}`);
  return lines.join("\n");
}

// Special added tokens of each vocabulary, to recognise one matched literally in the text.
const SPECIAL_IDS = { gpt2: new Set([50256]), "bert-base-uncased": new Set([0, 100, 101, 102, 103]) };

// Rust's special_tokens_mask marks only the tokens the post-processor adds; tokenizer.h also
// marks a special token matched in the text ("[SEP]" typed by the user). Returns the reference
// mask with those set, so the comparison checks the documented contract.
function maskPerContract(name, item, mask) {
  const { ours, req } = item;
  return mask.map((m, i) => {
    const o = ours.offsets?.[i], id = ours.ids?.[i];
    if (m || !o || o[0] < 0 || !SPECIAL_IDS[name].has(id)) return m;
    const text = Buffer.from(o[0] ? req.b : req.a, "utf8");
    return text.subarray(o[1], o[2]).toString("utf8") === ours.tokens[i] ? 1 : 0;
  });
}

function compare(name, items) {
  for (const item of items) {
    const { ours, kind, req } = item;
    const refs = { ...item.refs };
    const rust = refs["hf-rust"];
    if (rust?.special_mask && !ours.error) rust.special_mask = maskPerContract(name, item, rust.special_mask);
    if (rust?.early_exit) {
      // tokenizers 0.23's early exit split a truncated pair differently from truncation.rs:
      // hold ragd to truncation.rs's lengths instead, and list the case.
      const got = [0, 1].map((s) => (ours.offsets ?? []).filter((o) => o[0] === s).length);
      ambiguities.push(`${name} [${kind} ${item.label}] lengths ${JSON.stringify(rust.early_exit.lengths)}: ` +
        `truncation.rs keeps ${JSON.stringify(rust.early_exit.classic)}, tokenizers 0.23.2 ${JSON.stringify(rust.early_exit.got)}, ragd ${JSON.stringify(got)}`);
      if (same(got, rust.early_exit.classic)) passed++;
      else failures.push({ key: `${name} truncated lengths vs truncation.rs`, text: describe(name, item, "truncated lengths", got, rust.early_exit.classic, "truncation.rs") });
      delete refs["hf-rust"];
    }
    if (req.a !== undefined) texts++, (bytes += Buffer.byteLength(req.a) + Buffer.byteLength(req.b ?? ""));
    if (refs["hf-rust"]?.ids) tokens += refs["hf-rust"].ids.length;
    const fail = (field, o, t, ref) => failures.push({ key: `${name} ${field} vs ${ref}`, text: describe(name, item, field, o, t, ref) });
    for (const [refName, ref] of Object.entries(refs)) {
      if (ref.error || ours.error) {
        if (ref.error && ours.error) passed++;
        else if (ref.error && refName !== "hf-rust") deviations.push(`${name} ${refName} failed where ragd and hf-rust answer: ${ref.error} [${kind} ${item.label}]`);
        else fail("error", ours.error ?? "(answered)", ref.error ?? "(answered)", refName);
        continue;
      }
      for (const field of FIELDS) {
        if (!(field in ref)) continue;
        // Decoding is compared on the same ids; a difference in ids is reported as such.
        if (field.startsWith("decoded") && ref.ids && !same(ref.ids, ours.ids)) continue;
        if (same(ours[field], ref[field])) {
          passed++;
          continue;
        }
        const rust = refs["hf-rust"];
        if (refName !== "hf-rust" && rust && field in rust && same(ours[field], rust[field]))
          deviations.push(`${name} ${field}: ${refName} differs from hf-rust (ragd = hf-rust) [${kind} ${item.label}] ${JSON.stringify(req).slice(0, 160)}`);
        else fail(field, ours[field], ref[field], refName);
      }
    }
    // References among themselves (GPT-2: the README says they agree id for id).
    const names = Object.keys(refs).filter((r) => refs[r].ids);
    for (let i = 0; i < names.length; i++)
      for (let j = i + 1; j < names.length; j++)
        if (!same(refs[names[i]].ids, refs[names[j]].ids)) {
          const k = `${name}: ${names[i]} vs ${names[j]}`;
          (refDisagree[k] ??= []).push(item.label);
        }
    if ("roundtrip" in ours) {
      if (ours.roundtrip) passed++;
      else fail("byte round trip", "decode(encode(text)) != text", "identical bytes", "input");
    }
    if (kind === "vector") {
      const v = vectors.find((v) => v.tokenizer === name && v.a === req.a && v.b === req.b);
      for (const field of ["ids", "type_ids"]) {
        if (!v[field]) continue;
        if (same(ours[field], v[field])) passed++;
        else fail(field, ours[field], v[field], "published");
      }
    }
  }
}

// ---- main -----------------------------------------------------------------------------------
const t0 = Date.now();
const jobs = ["gpt2", "bert-base-uncased"].map(async (name) => {
  const dir = path.join(testdata, "tokenizers", name);
  const items = requestsFor(name);
  const input = items.map((it) => JSON.stringify(it.req)).join("\n") + "\n";
  const [ours, refs] = await Promise.all([
    run(dump, [dir], input),
    run(process.execPath, [path.join(here, "oracle.mjs"), dir], input),
  ]);
  if (ours.length !== items.length || refs.length !== items.length)
    throw new Error(`${name}: ${items.length} requests but ${ours.length} answers from tok_dump and ${refs.length} from oracle.mjs`);
  items.forEach((it, i) => ((it.ours = ours[i]), (it.refs = refs[i])));
  return [name, items];
});
let results;
try {
  results = await Promise.all(jobs);
} catch (e) {
  console.error(`tokenizer_parity: ${e.message}`);
  process.exit(1);
}
for (const [name, items] of results) compare(name, items);

for (const f of failures.slice(0, show)) console.log(f.text + "\n");
if (failures.length) {
  const byKey = {};
  for (const f of failures) byKey[f.key] = (byKey[f.key] ?? 0) + 1;
  console.log("mismatches by tokenizer, field and reference:");
  for (const [k, n] of Object.entries(byKey)) console.log(`  ${k}: ${n}`);
}
if (deviations.length) {
  console.log(`${deviations.length} reference deviations (a JS port disagrees with Rust; ragd follows Rust):`);
  for (const d of deviations.slice(0, 30)) console.log("  " + d);
}
if (ambiguities.length) {
  console.log(`${ambiguities.length} truncated pairs where tokenizers 0.23.2's early exit departs from truncation.rs (ragd held to truncation.rs):`);
  for (const a of ambiguities.slice(0, 10)) console.log("  " + a);
}
for (const [k, labels] of Object.entries(refDisagree))
  console.log(`references disagree on ids, ${k}: ${labels.length} requests (${labels.slice(0, 8).join(", ")}${labels.length > 8 ? ", …" : ""})`);
console.log(`compared ${texts} texts (${(bytes / 1e6).toFixed(2)} MB, ${tokens} hf-rust tokens) and ${results.reduce((n, [, it]) => n + it.filter((x) => x.kind === "decode").length, 0)} decode requests` +
  ` on gpt2 and bert-base-uncased in ${((Date.now() - t0) / 1000).toFixed(1)} s${full ? " (full corpora)" : ""}`);
console.log(`${passed} passed, ${failures.length} failed`);
process.exit(failures.length ? 1 : 0);
