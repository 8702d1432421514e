#!/usr/bin/env bash
# Fetches the default models into the checkout's models/ directory, which
# docker/compose.yaml mounts read-only at /models. Same as scripts/fetch-models.sh [DEST].
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
exec bash "$root/scripts/fetch-models.sh" "${1:-$root/models}"
