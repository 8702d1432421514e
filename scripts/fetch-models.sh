#!/usr/bin/env bash
# Downloads the default models from the Hugging Face hub into DEST (default ./models):
#   embedder   sentence-transformers/all-MiniLM-L6-v2
#   reranker   cross-encoder/ms-marco-MiniLM-L-6-v2
#   generator  openai-community/gpt2
# Files already present are kept. Honours HF_ENDPOINT and HF_TOKEN. Exits non-zero with a
# clear message when the hub cannot be reached.
set -euo pipefail
dest=${1:-models}
hub=${HF_ENDPOINT:-https://huggingface.co}
auth=()
[ -n "${HF_TOKEN:-}" ] && auth=(-H "Authorization: Bearer $HF_TOKEN")

fetch() { # repo dir file...
    local repo=$1 dir=$2
    shift 2
    for f in "$@"; do
        local out="$dest/$dir/$f"
        [ -s "$out" ] && continue
        mkdir -p "$(dirname "$out")"
        if ! curl -fsSL --retry 2 --connect-timeout 10 "${auth[@]}" -o "$out.part" "$hub/$repo/resolve/main/$f"; then
            rm -f "$out.part"
            cat >&2 <<MSG
fetch-models: could not download $repo/$f from $hub.
  The default models need network access to the Hugging Face hub (or set HF_ENDPOINT to a mirror).
  Without it, point ragd at local Hugging Face directories instead:
    build/ragd serve --embedder DIR --reranker DIR --generator DIR
MSG
            exit 1
        fi
        mv "$out.part" "$out"
    done
}

fetch sentence-transformers/all-MiniLM-L6-v2 embedder config.json model.safetensors tokenizer.json \
    tokenizer_config.json vocab.txt special_tokens_map.json modules.json sentence_bert_config.json \
    1_Pooling/config.json
mkdir -p "$dest/embedder/2_Normalize"
fetch cross-encoder/ms-marco-MiniLM-L-6-v2 reranker config.json model.safetensors tokenizer.json \
    tokenizer_config.json vocab.txt special_tokens_map.json
fetch openai-community/gpt2 generator config.json model.safetensors tokenizer.json tokenizer_config.json \
    vocab.json merges.txt
echo "fetch-models: models are in $dest/"
