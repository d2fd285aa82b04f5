#!/usr/bin/env bash
# The GPU checks of issue 3, as ONE device call (about 8 minutes of a 15-minute budget).
# Here first: `bash bench/device/prepare.sh` (fetches .whl/, about 51 MB). Then the device tool:
#   run(command="bash bench/device/check.sh", carry=[".whl"], timeout_s=600)
# It writes device.txt, musicgen.txt, chatterbox.txt (and render.txt where the machine has an
# ffmpeg) under $OUT; copy the figures into docs/benchmarks.md.
# No weights can be fetched there, so both benchmarks use the real architectures with random
# weights (see bench/gpu.py and bench/gpu_chatterbox.py for what that does and does not time).
# To try it out here: PYTHON=<a Python 3.12 like the image's> DEVICE=cpu with the small sizes
#   MUSICGEN_ARGS="--model tiny --tracks 2 --seconds 1 --batches 2"
#   CHATTERBOX_ARGS="--tiny --chunks 2 --batch 2" RENDER_ARGS="--model tiny"
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-/tmp/songbatch-check}"
DEVICE="${DEVICE:-cuda}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 TQDM_DISABLE=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
PY="${PYTHON:-python3}"

install() {  # $1: group under .whl/; installs into /tmp/site-$1 without touching the image
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "/tmp/site-$1" ".whl/$1"/*.whl 2>&1 | grep -v "^WARNING" || true
}
install core
install chatterbox
CORE="/tmp/site-core:$PWD/src"
CHATTERBOX="/tmp/site-chatterbox:$CORE"

{
    date -u
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version \
        --format=csv
    PYTHONPATH="$CORE" "$PY" -c "import sys, torch, transformers; print(sys.version.split()[0],
        'torch', torch.__version__, 'transformers', transformers.__version__,
        'cuda', torch.cuda.is_available())"
} 2>&1 | tee "$OUT/device.txt"

echo "== musicgen: sequential vs batched, random-small (musicgen-small's architecture)"
# shellcheck disable=SC2086  # the *_ARGS are word lists
PYTHONPATH="$CORE" timeout 200 "$PY" bench/gpu.py --device "$DEVICE" \
    ${MUSICGEN_ARGS:---model random-small --batches 4,8,16} 2>&1 | tee "$OUT/musicgen.txt"

echo "== chatterbox: the package's loop vs songbatch, one chunk and 8 per call, random weights"
# shellcheck disable=SC2086
PYTHONPATH="$CHATTERBOX" timeout 240 "$PY" bench/gpu_chatterbox.py --device "$DEVICE" \
    ${CHATTERBOX_ARGS:---random --chunks 8 --batch 8} 2>&1 \
    | grep -v -i "warning\|pkg_resources\|self.gen = func\|deprecate(" | tee "$OUT/chatterbox.txt"

FFMPEG="$(command -v ffmpeg || true)"
if [ -n "$FFMPEG" ]; then
    echo "== an album through songbatch render --profile local (random-small as musicgen-small)"
    PYTHONPATH="$CORE" IMAGEIO_FFMPEG_EXE="$FFMPEG" timeout 120 "$PY" \
        bench/device/render_album.py --device "$DEVICE" ${RENDER_ARGS:-} 2>&1 | tee "$OUT/render.txt"
else
    echo "no ffmpeg on this machine: the CLI album render is skipped" | tee "$OUT/render.txt"
fi
echo "done: $OUT"
