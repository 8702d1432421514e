#!/usr/bin/env bash
# Runs the service (the README's first command): installs the Debian packages it needs,
# builds build/ragd, fetches the default models into models/, and serves them on
# 127.0.0.1:8080 in the foreground (Ctrl-C or SIGTERM stops it cleanly).
#   usage: scripts/serve.sh [ragd serve flags...]
#   e.g.   scripts/serve.sh --listen 0.0.0.0:8080 --api-key-file keys.txt
# Environment: RAGD_MODELS_DIR (default models), RAGD_ALLOW_NO_MODELS=1 to serve with the
# models that are present when the download fails (routes whose model is absent answer
# 503), and every RAGD_* variable `ragd serve` reads.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh build runtime
bin=$(bash scripts/build.sh ragd)
models=${RAGD_MODELS_DIR:-models}

if ! bash scripts/fetch-models.sh "$models"; then
    if [ "${RAGD_ALLOW_NO_MODELS:-0}" != 1 ]; then
        echo "serve: the models could not be fetched (see above); not starting." >&2
        echo "serve: RAGD_ALLOW_NO_MODELS=1 scripts/serve.sh serves with the models that are present." >&2
        exit 1
    fi
    echo "serve: RAGD_ALLOW_NO_MODELS=1: serving with the models that are present" >&2
fi

# Each model directory that exists is passed, unless RAGD_EMBEDDER etc. already names one
# (flags beat the environment in ragd, and flags given to this script beat both).
args=()
for role in embedder reranker generator; do
    var=RAGD_${role^^}
    dir=$models/$role
    if [ -n "${!var:-}" ]; then
        continue
    elif [ -f "$dir/config.json" ] && { [ -f "$dir/tokenizer.json" ] || [ -f "$dir/vocab.txt" ] ||
                                        [ -f "$dir/vocab.json" ]; }; then
        args+=("--$role" "$dir")
    else
        echo "serve: no $role in $dir; routes that need it will answer 503" >&2
    fi
done
exec "$bin" serve "${args[@]}" "$@"
