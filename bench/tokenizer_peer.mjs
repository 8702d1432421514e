// tokenizer_peer.mjs — the peers of bench/tokenizer_bench, on the same texts cut the same way:
// moby_dick.txt paragraph by paragraph (cut after every "\n\n", the blank line kept with the
// paragraph before it) and sotu.jsonl one whole speech per call. Single thread, median of RUNS
// runs, no special tokens added. Prints one JSON line per (tokenizer, corpus, peer).
//   hf-js        @huggingface/tokenizers (pure JS) on tokenizer.json
//   tiktoken-js  js-tiktoken, gpt2 ranks (GPT-2 only)
//   hf-rust      npm `tokenizers` (Hugging Face's Rust library through napi): one encodeBatch
//                call over all the texts, held to one thread (RAYON_NUM_THREADS=1,
//                TOKENIZERS_PARALLELISM=false); the stored truncation of tokenizer.json is removed
// The packages come from tests/parity (npm ci --prefix tests/parity).
//   usage: node bench/tokenizer_peer.mjs SHARED_DIR [RUNS]
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
process.env.RAYON_NUM_THREADS = "1"; // before the Rust library starts its thread pool
process.env.TOKENIZERS_PARALLELISM = "false";
const require = createRequire(path.join(here, "..", "tests", "parity", "package.json"));
let hf, tiktoken, rust;
try {
  hf = require("@huggingface/tokenizers");
  tiktoken = require("js-tiktoken");
  rust = require("tokenizers");
} catch (e) {
  console.error(`tokenizer_peer: peers not installed (run: npm ci --prefix tests/parity): ${e.message}`);
  process.exit(1);
}
const shared = process.argv[2] || path.join(here, "..", "..", "shared");
const runs = Number(process.argv[3] || 5);
const textdir = path.join(shared, "testdata", "text");
const corpora = {
  moby_dick: paragraphs(fs.readFileSync(path.join(textdir, "moby_dick.txt"), "utf8")),
  sotu: fs.readFileSync(path.join(textdir, "sotu.jsonl"), "utf8").split("\n").filter((l) => l.trim())
    .map((l) => JSON.parse(l).text),
};

// Cut after every "\n\n", scanning on from the cut (tokenizer_bench.c cuts the same way).
function paragraphs(text) {
  const out = [];
  for (let p = 0; p < text.length; ) {
    const at = text.indexOf("\n\n", p);
    const end = at < 0 ? text.length : at + 2;
    out.push(text.slice(p, end));
    p = end;
  }
  return out;
}

async function median(fn) {
  const times = [];
  let tokens = 0;
  for (let r = 0; r < runs; r++) {
    const t0 = process.hrtime.bigint();
    tokens = await fn();
    times.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  times.sort((a, b) => a - b);
  return { seconds: times[Math.floor(runs / 2)], tokens };
}

for (const name of ["gpt2", "bert-base-uncased"]) {
  const dir = path.join(shared, "testdata", "tokenizers", name);
  const json = fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8");
  const config = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
  const peers = { "hf-js": new hf.Tokenizer(JSON.parse(json), config), "hf-rust": rust.Tokenizer.fromString(json) };
  peers["hf-rust"].disableTruncation(); // gpt2's tokenizer.json stores max_length 50
  peers["hf-rust"].disablePadding();
  if (name === "gpt2") peers["tiktoken-js"] = tiktoken.getEncoding("gpt2");
  // Each returns the token count of all texts.
  const encoders = {
    "hf-js": (texts) => texts.reduce((n, t) => n + peers["hf-js"].encode(t, { add_special_tokens: false }).ids.length, 0),
    "tiktoken-js": (texts) => texts.reduce((n, t) => n + peers["tiktoken-js"].encode(t, "all").length, 0),
    "hf-rust": async (texts) => (await peers["hf-rust"].encodeBatch(texts, { addSpecialTokens: false }))
      .reduce((n, e) => n + e.getIds().length, 0),
  };
  for (const [corpus, texts] of Object.entries(corpora)) {
    const bytes = texts.reduce((n, t) => n + Buffer.byteLength(t), 0);
    for (const peer of Object.keys(peers)) {
      const enc = encoders[peer];
      const { seconds, tokens } = await median(() => enc(texts));
      console.log(JSON.stringify({ tokenizer: name, corpus, peer, texts: texts.length, bytes, tokens, seconds,
        mb_per_s: bytes / seconds / 1e6 }));
    }
  }
}
