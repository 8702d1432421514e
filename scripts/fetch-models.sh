#!/usr/bin/env bash
# Downloads ragd's default models from the Hugging Face hub into DEST (default ./models):
#   DEST/embedder   sentence-transformers/all-MiniLM-L6-v2     (--embedder)
#   DEST/reranker   cross-encoder/ms-marco-MiniLM-L-6-v2       (--reranker)
#   DEST/generator  openai-community/gpt2                      (--generator)
#   usage: scripts/fetch-models.sh [DEST]
# Only the files ragd reads are fetched (about 650 MB in all). A file already present and
# non-empty is kept, so a re-run only fetches what is missing. Each file is downloaded to a
# temporary name, checked (non-empty; SHA-256 when the hub states one) and then renamed, so
# an interrupted run never leaves a truncated file under its real name.
# Environment: HF_ENDPOINT (a mirror, default https://huggingface.co), HF_TOKEN (sent as a
# bearer token), HF_REVISION (branch, tag or commit, default main).
# Exits non-zero with one message saying what failed when the hub cannot be reached.
set -euo pipefail

dest=${1:-models}
hub=${HF_ENDPOINT:-https://huggingface.co}
hub=${hub%/}
rev=${HF_REVISION:-main}
auth=()
if [ -n "${HF_TOKEN:-}" ]; then auth=(-H "Authorization: Bearer $HF_TOKEN"); fi

command -v curl >/dev/null 2>&1 || {
    echo "fetch-models: curl is not installed (scripts/install-deps.sh runtime, or apt-get install curl)" >&2
    exit 1
}

offline_help() {
    cat >&2 <<MSG
fetch-models: $1
  Downloading the default models needs network access to $hub
  (set HF_ENDPOINT to use a mirror, HF_TOKEN for a private or gated repository).
  Without it, put Hugging Face model directories in $dest/{embedder,reranker,generator}
  by other means, or point ragd at local directories:
    build/ragd serve --embedder DIR --reranker DIR --generator DIR
  (or RAGD_EMBEDDER, RAGD_RERANKER, RAGD_GENERATOR; each is optional, and a route whose
  model is absent answers 503). scripts/serve.sh serves with what is present when
  RAGD_ALLOW_NO_MODELS=1.
MSG
}

tmp=
cleanup() { if [ -n "$tmp" ]; then rm -f "$tmp" "$tmp.hdr" "$tmp.err"; fi; tmp=; }
trap cleanup EXIT
trap 'exit 130' INT TERM

# fetch_file REPO ROLE FILE required|optional
fetch_file() {
    local repo=$1 role=$2 file=$3 need=$4
    local out="$dest/$role/$file"
    [ -s "$out" ] && return 0
    mkdir -p "$(dirname "$out")"
    local url="$hub/$repo/resolve/$rev/$file" code rc=0 err
    local retries=3
    [ "$need" = required ] || retries=0
    tmp="$out.part.$$"
    code=$(curl -sS -L --retry "$retries" --retry-delay 2 --connect-timeout 15 --speed-limit 1024 \
        --speed-time 60 "${auth[@]}" -D "$tmp.hdr" -o "$tmp" -w '%{http_code}' "$url" 2>"$tmp.err") || rc=$?
    err=$(tail -n 1 "$tmp.err" | head -c 300)
    if [ "$need" = optional ] && { [ "$rc" -ne 0 ] || [ "$code" != 200 ]; }; then
        cleanup   # a file ragd can do without: absent upstream or unreachable, go on
        return 0
    fi
    if [ "$rc" -ne 0 ]; then
        offline_help "could not download $repo/$file: ${err:-curl exited with status $rc}"
        exit 1
    fi
    case "$code" in
        200) ;;
        404)
            echo "fetch-models: $url: not found (HTTP 404); check HF_REVISION ('$rev') and HF_ENDPOINT" >&2
            exit 1 ;;
        401 | 403)
            offline_help "$url was refused (HTTP $code): the repository is private or gated, or the token is wrong"
            exit 1 ;;
        *)
            offline_help "$url answered HTTP $code"
            exit 1 ;;
    esac
    if [ ! -s "$tmp" ]; then
        echo "fetch-models: $url: the download is empty" >&2
        exit 1
    fi
    # For files stored with Git LFS / Xet the hub's first answer carries X-Linked-Etag, the
    # SHA-256 of the content.
    local want got
    want=$(grep -i '^x-linked-etag:' "$tmp.hdr" | head -n 1 | tr -d '"\r' | awk '{print tolower($2)}' || true)
    if [[ $want =~ ^[0-9a-f]{64}$ ]]; then
        got=$(sha256sum "$tmp" | awk '{print $1}')
        if [ "$got" != "$want" ]; then
            echo "fetch-models: $url: SHA-256 $got does not match the hub's $want; run again" >&2
            exit 1
        fi
    fi
    mv -f "$tmp" "$out"
    cleanup
    echo "fetch-models: $role/$file" >&2
}

# fetch REPO ROLE FILE... [-- OPTIONAL_FILE...]
fetch() {
    local repo=$1 role=$2 need=required
    shift 2
    for f in "$@"; do
        if [ "$f" = -- ]; then need=optional; continue; fi
        fetch_file "$repo" "$role" "$f" "$need"
    done
}

fetch sentence-transformers/all-MiniLM-L6-v2 embedder \
    config.json model.safetensors tokenizer.json tokenizer_config.json vocab.txt \
    special_tokens_map.json modules.json sentence_bert_config.json 1_Pooling/config.json
mkdir -p "$dest/embedder/2_Normalize"   # named by modules.json; the module has no files
fetch cross-encoder/ms-marco-MiniLM-L-6-v2 reranker \
    config.json model.safetensors tokenizer.json tokenizer_config.json vocab.txt \
    special_tokens_map.json
fetch openai-community/gpt2 generator \
    config.json model.safetensors tokenizer.json tokenizer_config.json vocab.json merges.txt \
    -- special_tokens_map.json generation_config.json
echo "fetch-models: models are in $dest/ (embedder, reranker, generator)" >&2
