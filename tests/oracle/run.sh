#!/usr/bin/env bash
# Builds random checkpoints with a tests/reference generator and runs a C parity program
# against a PyTorch oracle. Skips (77) without ../shared/testdata or Debian's python3-torch.
#   usage: run.sh MAKE_CHECKPOINTS_PY PARITY_BINARY ORACLE_PY
set -euo pipefail
[ -d "${RAGD_SHARED:-../shared}/testdata/tokenizers" ] || { echo "skipped: ../shared/testdata not found"; exit 77; }
/usr/bin/python3 -c "import torch" 2>/dev/null || { echo "skipped: python3-torch is not installed"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
/usr/bin/python3 "$1" "$work"
"$2" "$work" "$3"
