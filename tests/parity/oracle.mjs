// oracle.mjs — the independent references for the tokenizer parity test. Reads the same JSON
// request lines as tok_dump and prints, per line, one JSON object keyed by reference name, each
// value in tok_dump's answer format (a field is absent when that reference cannot produce it):
//
//   hf-rust   npm `tokenizers`: Hugging Face's Rust library itself (napi binary shipped in the
//             package), loading tokenizer.json. The normative behaviour (FORMATS.md §4, §5.5):
//             ids, type ids, special-token mask, offsets (its char offsets turned into bytes),
//             pairs, truncation, and the decoder's output ("decoded_keep").
//   hf-js     npm `@huggingface/tokenizers`: the pure-JS port, with tokenizer_config.json, so its
//             decode applies transformers' clean_up_tokenization_spaces ("decoded"). It has no
//             truncation, and ignores the pair for byte-level BPE.
//   tiktoken  npm `js-tiktoken` with the gpt2 ranks (GPT-2 only), special tokens allowed. A pair
//             is the two encodings concatenated with type ids 0 then 1, as Rust's ByteLevel
//             post-processor does; no truncation.
//
//   usage: node oracle.mjs TOKENIZER_DIR [REQUESTS.jsonl]   (standard input when no file)
import { Tokenizer as JsTokenizer } from "@huggingface/tokenizers";
import { getEncoding } from "js-tiktoken";
import rust from "tokenizers";
import fs from "node:fs";
import path from "node:path";

const dir = process.argv[2];
if (!dir) {
  console.error("usage: node oracle.mjs TOKENIZER_DIR [REQUESTS.jsonl]");
  process.exit(2);
}
const tokjson = fs.readFileSync(path.join(dir, "tokenizer.json"), "utf8");
const config = JSON.parse(fs.readFileSync(path.join(dir, "tokenizer_config.json"), "utf8"));
const isBpe = JSON.parse(tokjson).model.type === "BPE";
const hfRust = rust.Tokenizer.fromString(tokjson);
const hfJs = new JsTokenizer(JSON.parse(tokjson), config);
const tik = isBpe ? getEncoding("gpt2") : null;

// Byte offset of every code point boundary of s: table[i] = bytes before the i-th code point.
function cpToByte(s) {
  const table = [0];
  let bytes = 0;
  for (const ch of s) {
    bytes += Buffer.byteLength(ch, "utf8");
    table.push(bytes);
  }
  return table;
}

async function rustEncode(req) {
  const special = req.special !== false;
  if (req.max_length)
    hfRust.setTruncation(req.max_length, { strategy: "LongestFirst", direction: req.direction === "left" ? "left" : "right" });
  else hfRust.disableTruncation();
  const e = await hfRust.encode(req.a, req.b ?? null, { addSpecialTokens: special });
  const ids = e.getIds();
  const maps = [cpToByte(req.a), cpToByte(req.b ?? "")];
  const seqs = e.getSequenceIds();
  const offsets = e.getOffsets().map(([s, t], i) => {
    const seq = seqs[i] ?? -1;
    return seq < 0 ? [-1, 0, 0] : [seq, maps[seq][s], maps[seq][t]];
  });
  const out = {
    ids, type_ids: e.getTypeIds(), special_mask: e.getSpecialTokensMask(), offsets,
    tokens: e.getTokens(), decoded_keep: await hfRust.decode(ids, false),
  };
  if (req.max_length && req.b !== undefined) {
    // tokenizers 0.23 stops tokenizing each text at max_length tokens before truncating
    // (upstream #1990), so longest_first can see two equal lengths where the texts differ and
    // split the budget the other way round. Report where that departs from truncation.rs.
    hfRust.disableTruncation();
    const n = [(await hfRust.encode(req.a, null, { addSpecialTokens: false })).getIds().length,
               (await hfRust.encode(req.b, null, { addSpecialTokens: false })).getIds().length];
    const added = special ? (await hfRust.encode("", "", { addSpecialTokens: true })).getIds().length : 0;
    const classic = longestFirst(n[0], n[1], Math.max(0, req.max_length - added));
    const got = [0, 1].map((s) => seqs.filter((x) => x === s).length);
    if (!sameArr(classic, got)) out.early_exit = { lengths: n, classic, got };
  }
  return out;
}

// Lengths kept by longest_first for a pair (tokenizers/src/utils/truncation.rs).
function longestFirst(len1, len2, max) {
  if (len1 + len2 <= max) return [len1, len2];
  let [n1, n2] = len1 > len2 ? [len2, len1] : [len1, len2];
  n2 = n1 > max ? n1 : Math.max(n1, max - n1);
  if (n1 + n2 > max) (n1 = Math.floor(max / 2)), (n2 = n1 + (max % 2));
  return len1 > len2 ? [n2, n1] : [n1, n2];
}
const sameArr = (x, y) => x.length === y.length && x.every((v, i) => v === y[i]);

function jsEncode(req) {
  if (req.max_length) return {};
  if (isBpe && req.b !== undefined) return {};
  const e = hfJs.encode(req.a, { text_pair: req.b ?? null, add_special_tokens: req.special !== false, return_token_type_ids: true });
  const out = { ids: e.ids, tokens: e.tokens, ...jsDecode(e.ids) };
  if (e.token_type_ids) out.type_ids = e.token_type_ids;
  return out;
}
function jsDecode(ids) {
  if (ids.length === 0) return { decoded: "", decoded_keep: "" }; // it refuses an empty list
  return {
    decoded: hfJs.decode(ids, { skip_special_tokens: true }),
    decoded_keep: hfJs.decode(ids, { skip_special_tokens: false, clean_up_tokenization_spaces: false }),
  };
}

function tikEncode(req) {
  if (req.max_length) return {};
  const a = tik.encode(req.a, "all");
  const b = req.b !== undefined ? tik.encode(req.b, "all") : [];
  const ids = [...a, ...b];
  return { ids, type_ids: [...a.map(() => 0), ...b.map(() => 1)], decoded_keep: tik.decode(ids) };
}

async function answer(req) {
  const out = {};
  const guard = async (name, fn) => {
    try {
      out[name] = await fn();
    } catch (e) {
      out[name] = { error: String(e && e.message ? e.message : e) };
    }
  };
  if (Array.isArray(req.ids)) {
    await guard("hf-rust", async () => ({ decoded_keep: await hfRust.decode(req.ids, false) }));
    await guard("hf-js", () => jsDecode(req.ids));
    if (tik) await guard("tiktoken", () => ({ decoded_keep: tik.decode(req.ids) }));
  } else {
    await guard("hf-rust", () => rustEncode(req));
    await guard("hf-js", () => jsEncode(req));
    if (tik) await guard("tiktoken", () => tikEncode(req));
  }
  return out;
}

const input = fs.readFileSync(process.argv[3] ?? 0, "utf8");
const answers = [];
for (const line of input.split("\n")) if (line.trim() !== "") answers.push(JSON.stringify(await answer(JSON.parse(line))));
process.stdout.write(answers.join("\n") + (answers.length ? "\n" : ""));
