#!/usr/bin/env bash
# Copy what scripts/pretrain.py reads into one folder inside the checkout (ignored by git),
# so that a pre-training run can travel to another machine with the working tree (a GPU
# machine that sees only the checkout): Train400, the W2S noisy captures FOV 1-50 (the
# training data) and the three W2S clean images of the validation log (FOV 51, 55, 59,
# channel 1). About 42 MB. Usage: scripts/pack_pretrain_data.sh [DATA] [DEST]
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/data}
DEST=${2:-.pretrain-data}
for f in "$DATA/train400" "$DATA/w2s/noisy" "$DATA/w2s/clean"; do
    [ -d "$f" ] || { echo "pack_pretrain_data: $f is missing" >&2; exit 2; }
done
mkdir -p "$DEST/train400" "$DEST/w2s/noisy" "$DEST/w2s/clean"
cp "$DATA"/train400/*.png "$DEST/train400/"
for fov in $(seq 1 50); do
    cp "$DATA"/w2s/noisy/"$(printf 'fov%03d' "$fov")"_ch*.png "$DEST/w2s/noisy/"
done
for fov in 051 055 059; do
    cp "$DATA/w2s/clean/fov${fov}_ch1.png" "$DEST/w2s/clean/"
done
echo "$DEST: $(find "$DEST" -name '*.png' | wc -l) images, $(du -sh "$DEST" | cut -f1)"
