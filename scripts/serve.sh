#!/usr/bin/env bash
# Runs the service: installs what it needs, builds, fetches the default models, serves.
# Extra arguments go to `ragd serve` (e.g. --listen 0.0.0.0:8080 --api-key-file keys.txt).
# RAGD_ALLOW_NO_MODELS=1 serves with whatever models are present when the download fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh build
bin=$(bash scripts/build.sh)
models=${RAGD_MODELS_DIR:-models}
if ! bash scripts/fetch-models.sh "$models"; then
    [ "${RAGD_ALLOW_NO_MODELS:-0}" = 1 ] || exit 1
    echo "serve: RAGD_ALLOW_NO_MODELS=1, serving with the models that are present" >&2
fi
args=()
for role in embedder reranker generator; do
    [ -f "$models/$role/config.json" ] && args+=("--$role" "$models/$role")
done
exec "$bin" serve "${args[@]}" "$@"
