#!/usr/bin/env bash
# One GPU session's work, as one command (docs/algorithm.md, "Pre-training on a GPU"):
# 1. the plugin's own training and denoising on CUDA, timed, alone on the GPU
#    (benchmarks/device_check.py);
# 2. four pre-training runs side by side on the same GPU, SECS seconds each, each exported
#    as a prior file with its provenance. PLAN stop22 (what stop 22 ran):
#    w24c  the shipped Anscombe-route prior (width 24) continued, batch 256, lr 5e-4;
#    w24   width 24 from scratch, batch 128, lr 1e-3;
#    w48   width 48 from scratch, batch 128, lr 1e-3 (diverged);
#    w48b  width 48 from scratch, batch 256, lr 1e-3 (diverged).
#    PLAN width (the next GPU session's): widths 24, 32 and 48 from scratch, batch 128,
#    with a learning-rate warm-up and gradient clipping (w48 also at lr 1e-3).
# Needs .pretrain-data (scripts/pack_pretrain_data.sh) and, where dask is missing, its
# wheels in .whl. Results go to DEST (the device tool's $OUT): the four .pt files,
# device_check.json and logs.tgz (stdout and validation log of each run).
# Usage: scripts/pretrain_on_gpu.sh DEST [SECS] [PLAN]
set -u
cd "$(dirname "$0")/.."
DEST=${1:?destination folder}
SECS=${2:-330}
PLAN=${3:-width}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}  # cpu for a dry run of this script
if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}src PYTHONUNBUFFERED=1
nvidia-smi -L || true
mkdir -p "$DEST" /tmp/gpu-runs

timeout 150 "$PY" benchmarks/device_check.py .pretrain-data/w2s/clean/fov051_ch1.png \
    --device "$DEVICE" --seconds 10 --out "$DEST/device_check.json" \
    > /tmp/gpu-runs/device_check.log 2>&1
echo "device check: rc $?"; tail -3 /tmp/gpu-runs/device_check.log

ANSCOMBE=src/napari_noise2score/weights/prior_anscombe.pt
run() {  # name, then pretrain.py's options for the run
    local name=$1; shift
    timeout $((SECS + 120)) "$PY" scripts/pretrain.py --out "/tmp/gpu-runs/$name" \
        --data .pretrain-data --device "$DEVICE" --threads 3 --validate-every 60 \
        --checkpoint-every 60 --max-seconds "$SECS" "$@" > "/tmp/gpu-runs/$name.log" 2>&1
    echo "$name: train rc $?" >> "/tmp/gpu-runs/$name.log"
    "$PY" scripts/pretrain.py --out "/tmp/gpu-runs/$name" --data .pretrain-data "$@" \
        --export "$DEST/$name.pt" >> "/tmp/gpu-runs/$name.log" 2>&1
    echo "$name: export rc $?" >> "/tmp/gpu-runs/$name.log"
}
W48=width=48,depth=3,unshuffle=2
if [ "$PLAN" = stop22 ]; then
    NAMES="w24c w24 w48 w48b"
    run w24c --batch-size 256 --lr 5e-4 --init "$ANSCOMBE" &
    run w24 --batch-size 128 --lr 1e-3 &
    run w48 --batch-size 128 --lr 1e-3 --arch $W48 &
    run w48b --batch-size 256 --lr 1e-3 --arch $W48 &
else
    NAMES="w24 w32 w48 w48h"
    STABLE="--batch-size 128 --warmup 1000 --clip-grad 1.0"
    run w24 $STABLE --lr 5e-4 &
    run w32 $STABLE --lr 5e-4 --arch width=32,depth=3,unshuffle=2 &
    run w48 $STABLE --lr 5e-4 --arch $W48 &
    run w48h $STABLE --lr 1e-3 --arch $W48 &
fi
sleep 90; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv || true
wait
for name in $NAMES; do
    tail -4 "/tmp/gpu-runs/$name.log"
    cp "/tmp/gpu-runs/$name/log.jsonl" "/tmp/gpu-runs/$name.jsonl" 2>/dev/null
done
tar czf "$DEST/logs.tgz" -C /tmp/gpu-runs --exclude='*/checkpoint*' .
ls -la "$DEST"
