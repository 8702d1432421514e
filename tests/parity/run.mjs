// Tokenizer parity: ragd's C tokenizers (through tok_dump) against independent references on
// the real vocabulary files: @huggingface/tokenizers (the JS port of HF tokenizers) for GPT-2
// and BERT, and js-tiktoken for GPT-2. Ids, token type ids and decoded text must match for
// every text. Exits 1 on any mismatch, 77 when ../shared/testdata is absent.
//   usage: node run.mjs PATH/TO/tok_dump
import { Tokenizer } from "@huggingface/tokenizers";
import { getEncoding } from "js-tiktoken";
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const here = path.dirname(new URL(import.meta.url).pathname);
const shared = process.env.RAGD_SHARED || path.join(here, "..", "..", "..", "shared");
const tokdir = path.join(shared, "testdata", "tokenizers");
if (!fs.existsSync(path.join(tokdir, "gpt2"))) {
  console.log("skipped: ../shared/testdata not found");
  process.exit(77);
}
const dump = process.argv[2];

// The texts: crafted edge cases, very long words, and real paragraphs from the corpora.
const texts = JSON.parse(fs.readFileSync(path.join(here, "texts.json"), "utf8"));
texts.push("x".repeat(1500), "ab".repeat(700) + " tail", "é".repeat(300), "🙂".repeat(200), "1".repeat(1200));
const moby = fs.readFileSync(path.join(shared, "testdata", "text", "moby_dick.txt"), "utf8").split(/\n\s*\n/);
for (let i = 0; i < moby.length; i += Math.max(1, Math.floor(moby.length / 400))) texts.push(moby[i]);
const sotu = fs.readFileSync(path.join(shared, "testdata", "text", "sotu.jsonl"), "utf8").split("\n").filter(Boolean);
for (let i = 0; i < sotu.length; i += 8) {
  const row = JSON.parse(sotu[i]);
  const body = Object.values(row).filter((v) => typeof v === "string").sort((a, b) => b.length - a.length)[0];
  texts.push(body.slice(0, 3000));
}

function load(name) {
  const dir = path.join(tokdir, name);
  const json = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8"));
  const cfg = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
  return { dir, tok: new Tokenizer(json, cfg) };
}

function runC(dir, requests) {
  const input = requests.map((r) => JSON.stringify(r)).join("\n") + "\n";
  const r = spawnSync(dump, [dir], { input, maxBuffer: 1 << 30, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`tok_dump failed: ${r.stderr}`);
  return r.stdout.trim().split("\n").map((l) => JSON.parse(l));
}

let compared = 0, tokens = 0;
const failures = [];
function same(a, b) {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}
function decodeRef(tok, ids) {
  return ids.length ? tok.decode(ids, { skip_special_tokens: true }) : "";
}
function check(label, text, what, ours, theirs) {
  compared++;
  if (Array.isArray(ours) ? same(ours, theirs) : ours === theirs) return;
  let at = 0;
  if (Array.isArray(ours)) while (at < ours.length && ours[at] === theirs[at]) at++;
  failures.push(`${label} ${what} differ for ${JSON.stringify(text.slice(0, 120))}` +
    (Array.isArray(ours) ? ` at token ${at}: ours ${JSON.stringify(ours.slice(at, at + 8))}, theirs ${JSON.stringify(theirs.slice(at, at + 8))}`
                         : `: ours ${JSON.stringify(ours)}, theirs ${JSON.stringify(theirs)}`));
}

// GPT-2: HF port and tiktoken (special tokens allowed: a literal <|endoftext|> is id 50256).
{
  const { dir, tok } = load("gpt2");
  const tik = getEncoding("gpt2");
  const ours = runC(dir, texts.map((a) => ({ a })));
  texts.forEach((t, i) => {
    const hf = tok.encode(t).ids;
    if (ours[i].error) return failures.push(`gpt2 error for ${JSON.stringify(t.slice(0, 80))}: ${ours[i].error}`);
    tokens += hf.length;
    check("gpt2/hf", t, "ids", ours[i].ids, hf);
    check("gpt2/tiktoken", t, "ids", ours[i].ids, tik.encode(t, "all"));
    check("gpt2/hf", t, "decoded text", ours[i].decoded, decodeRef(tok, hf));
  });
}

// BERT uncased: single texts and pairs (with token type ids).
{
  const { dir, tok } = load("bert-base-uncased");
  const reqs = texts.map((a) => ({ a }));
  const pairs = [];
  for (let i = 0; i + 1 < texts.length && pairs.length < 120; i += 3) pairs.push([texts[i], texts[i + 1].slice(0, 400)]);
  pairs.forEach(([a, b]) => reqs.push({ a, b }));
  const ours = runC(dir, reqs);
  reqs.forEach((r, i) => {
    if (ours[i].error) return failures.push(`bert error for ${JSON.stringify(r.a.slice(0, 80))}: ${ours[i].error}`);
    const hf = tok.encode(r.a, { text_pair: r.b ?? null, return_token_type_ids: true });
    tokens += hf.ids.length;
    check(r.b ? "bert/pair" : "bert", r.a, "ids", ours[i].ids, hf.ids);
    if (r.b) check("bert/pair", r.a, "token_type_ids", ours[i].type_ids, hf.token_type_ids);
    else check("bert", r.a, "decoded text", ours[i].decoded, decodeRef(tok, hf.ids));
  });
}

for (const f of failures.slice(0, 25)) console.log("MISMATCH " + f);
console.log(`${texts.length} texts, ${tokens} reference tokens, ${compared} comparisons, ${failures.length} mismatches`);
console.log(`${compared - failures.length} passed, ${failures.length} failed`);
process.exit(failures.length ? 1 : 0);
