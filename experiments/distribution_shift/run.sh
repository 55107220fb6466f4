#!/usr/bin/env bash
# The distribution-shift study (README.md beside this file): ImageNet EfficientNet-Lite0 on
# animal_mnist (evaluated on its test split under 8 corruptions at severity 3) and on digits
# (evaluated on mnist_5k: the same ten digits from another source).
#   Q1: linear_probe, lp_ft, full at 10% and 100% of the labels, 5 seeds (Kumar et al. 2022)
#   Q2: block_k for every layer group k vs full, 100%, 2 seeds (Lee et al. 2023)
#   Q3: calibration before and after temperature scaling, from the Q1 runs
# Run from the repository root with .venv set up (make test): bash experiments/distribution_shift/run.sh
set -euo pipefail
OUT=experiments/distribution_shift
XL=${XL:-xferlab}
ANIMALS=(data=animal_mnist data.test_fraction=0.1)  # 971 test images, each under 8 corruptions
DIGITS=(data=digits data.image_size=64 data.in_chans=3 "data.eval_sets=[mnist_5k]")  # as animals
BLOCKS=$(seq -s, 0 16)  # tf_efficientnet_lite0's layer groups below the head: the stem, 16 blocks

if [[ "${1:-}" != --report-only ]]; then  # --report-only: tables and plots from the stored runs
  for data in ANIMALS DIGITS; do
    declare -n args=$data
    $XL train -m experiment=distribution_shift "${args[@]}" freeze=linear_probe,lp_ft,full \
      data.fraction=0.1,1.0 seed=0,1,2,3,4
  done
  for data in ANIMALS DIGITS; do
    declare -n args=$data
    $XL train -m experiment=distribution_shift "${args[@]}" freeze=block_k "freeze.k=$BLOCKS" \
      data.fraction=1.0 seed=0,1
  done
fi
python "$OUT/make_report.py" --experiment distribution_shift --out "$OUT"
