#!/usr/bin/env bash
# Set up (or reuse) the project's virtual environment in .venv.
#
# torch is pinned to 2.13.0. On a machine without an NVIDIA GPU the CPU build is taken:
# first from a local wheel directory if pip is configured with one, then from the PyTorch
# CPU index; on a GPU machine the regular PyPI (CUDA) build is taken. Reruns are fast: the
# install is skipped while pyproject.toml is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
TORCH_VERSION=2.13.0

bash scripts/system-deps.sh  # Tesseract for OCR curation (only when missing; never fatal)
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=(.venv/bin/python -m pip --disable-pip-version-check)
stamp=.venv/.xgenmm-installed
want="$(sha256sum pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ]; then
  exit 0
fi

if ! .venv/bin/python -c "import torch, sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    "${pip[@]}" install "torch==$TORCH_VERSION"
  else
    # A CPU build in pip's local wheel directory (find-links) first, its dependencies from the
    # index; then the PyTorch CPU index (failing fast where it is unreachable); then PyPI.
    { "${pip[@]}" install -q --no-index --no-deps "torch==$TORCH_VERSION" 2>/dev/null \
        && "${pip[@]}" install -q "torch==$TORCH_VERSION"; } \
      || "${pip[@]}" install --retries 0 --timeout 15 --index-url https://download.pytorch.org/whl/cpu "torch==$TORCH_VERSION" \
      || "${pip[@]}" install "torch==$TORCH_VERSION"
  fi
fi
"${pip[@]}" install -q -e '.[dev]'
echo "$want" > "$stamp"
