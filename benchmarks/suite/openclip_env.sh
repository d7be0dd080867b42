#!/usr/bin/env bash
# A separate environment for open_clip, so the nine OpenAI CLIP backbones can run for real.
#
#   bash benchmarks/suite/openclip_env.sh            # venv at $OPENCLIP_VENV (default /work/venvs/openclip)
#   /work/venvs/openclip/bin/python benchmarks/suite/openclip_nine.py
#
# Why a separate venv: open_clip needs torchvision, and PyPI's torchvision does not load beside
# a CPU-only local torch wheel ("operator torchvision::nms does not exist"). So this venv takes
# torch and torchvision as a matched pair from one index (pypi.org: the CUDA build, which runs on
# CPU; it is a multi-GB download). The machine's pip config (find-links with a +cpu torch wheel,
# local extra indexes, constraints) is ignored here so it cannot slip the other torch in.
set -euo pipefail

VENV="${OPENCLIP_VENV:-/work/venvs/openclip}"
INDEX="${OPENCLIP_INDEX:-https://pypi.org/simple}"
TORCH="${OPENCLIP_TORCH:-2.13.0}"
TORCHVISION="${OPENCLIP_TORCHVISION:-0.28.0}"
OPEN_CLIP="${OPENCLIP_OPEN_CLIP:-open_clip_torch}"
PYTHON="${PYTHON:-python3}"
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

export PIP_CONFIG_FILE=/dev/null
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_CONSTRAINT PIP_INDEX_URL
PIP_ARGS=(--index-url "$INDEX")

"$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install "${PIP_ARGS[@]}" --upgrade pip
"$VENV/bin/python" -m pip install "${PIP_ARGS[@]}" "torch==$TORCH" "torchvision==$TORCHVISION"

# Later installs must not move the pair: pin them for every following resolve.
PINS="$VENV/torch-pins.txt"
printf 'torch==%s\ntorchvision==%s\n' "$TORCH" "$TORCHVISION" >"$PINS"
"$VENV/bin/python" -m pip install "${PIP_ARGS[@]}" -c "$PINS" "$OPEN_CLIP"
# The project itself, editable, with its runtime dependencies (torch already satisfied).
"$VENV/bin/python" -m pip install "${PIP_ARGS[@]}" -c "$PINS" -e "$REPO"
# pytest, to run the open_clip tests here (they skip in an environment without open_clip).
"$VENV/bin/python" -m pip install "${PIP_ARGS[@]}" -c "$PINS" "pytest>=8,<9.1"

"$VENV/bin/python" - <<'EOF'
import open_clip, torch, torchvision
import crossmodal.models.openclip  # noqa: F401
print(f"torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"open_clip {open_clip.__version__}: ok")
EOF
