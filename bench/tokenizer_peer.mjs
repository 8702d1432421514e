// The peer for bench/tokenizer_bench: @huggingface/tokenizers (JS) and js-tiktoken on the
// same paragraphs, median of 5 runs; then ragd's figures and the ratios, as JSON.
//   usage: node bench/tokenizer_peer.mjs BUILD_DIR [SHARED_DIR]   (after npm ci in tests/parity)
import { createRequire } from "node:module";
import { execFileSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";

const here = path.dirname(new URL(import.meta.url).pathname);
const require = createRequire(path.join(here, "..", "tests", "parity", "package.json"));
const { Tokenizer } = require("@huggingface/tokenizers");
const { getEncoding } = require("js-tiktoken");
const build = process.argv[2] || "build";
const shared = process.argv[3] || path.join(here, "..", "..", "shared");
const text = fs.readFileSync(path.join(shared, "testdata", "text", "moby_dick.txt"), "utf8");
const bytes = Buffer.byteLength(text);
const paras = text.split(/(?<=\n\n)/);

function median(fn) {
  const runs = [];
  for (let r = 0; r < 5; r++) {
    const t0 = process.hrtime.bigint();
    fn();
    runs.push(Number(process.hrtime.bigint() - t0) / 1e9);
  }
  return runs.sort((a, b) => a - b)[2];
}
function load(name) {
  const d = path.join(shared, "testdata", "tokenizers", name);
  return new Tokenizer(JSON.parse(fs.readFileSync(path.join(d, "tokenizer.json"))),
                       JSON.parse(fs.readFileSync(path.join(d, "tokenizer_config.json"))));
}
const peers = {
  "gpt2": { "hf-js": load("gpt2"), "tiktoken-js": getEncoding("gpt2") },
  "bert-base-uncased": { "hf-js": load("bert-base-uncased") },
};
const ours = execFileSync(path.join(build, "bench", "tokenizer_bench"), [shared], { encoding: "utf8" })
  .trim().split("\n").map((l) => JSON.parse(l));
for (const o of ours) {
  for (const [peer, tok] of Object.entries(peers[o.tokenizer])) {
    const secs = median(() => {
      for (const p of paras) peer === "tiktoken-js" ? tok.encode(p, "all") : tok.encode(p, { add_special_tokens: false });
    });
    const mbps = bytes / secs / 1e6;
    console.log(JSON.stringify({ bench: "tokenizer", tokenizer: o.tokenizer, ragd_mb_per_s: o.mb_per_s,
      peer, peer_mb_per_s: +mbps.toFixed(2), ratio: +(o.mb_per_s / mbps).toFixed(2) }));
  }
}
