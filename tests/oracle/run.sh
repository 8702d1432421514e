#!/usr/bin/env bash
# Builds the random checkpoints with tests/reference and runs a C parity program against
# the PyTorch oracle. Skips (77) without ../shared/testdata or Debian's python3-torch.
#   usage: run.sh PARITY_BINARY ORACLE_PY
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
[ -d "${RAGD_SHARED:-../shared}/testdata/tokenizers/bert-base-uncased" ] || { echo "skipped: ../shared/testdata not found"; exit 77; }
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "skipped: python3-torch is not installed"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 "$here/../reference/make_bert_checkpoints.py" "$work"
"$1" "$work" "$2"
