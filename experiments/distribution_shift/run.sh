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

REPORT=$OUT/report.md
report() {  # add a table to report.md: report <data.name> <metrics> <plot> [more report options]
  # --append: the report's one provenance footer (each command, its runs and their commits)
  # moves below the new table, so whatever run.sh writes in between stays above it
  $XL report --experiment distribution_shift --where "data.name=$1" --where "freeze!=block_k" \
    --metric "$2" --rows freeze --cols data.fraction --plot "$OUT/$3" "${@:4}" \
    --out "$REPORT" --append > /dev/null
}
blocks() {  # add a table of the block_k runs to report.md: blocks <data.name> <metrics>
  $XL report --experiment distribution_shift --where "data.name=$1" --where freeze=block_k \
    --metric "$2" --rows freeze.k --min-n 2 --out "$REPORT" --append > /dev/null
}
section() { printf '\n%s\n\n' "$1" >> "$REPORT"; }  # a heading

echo "# Distribution shift: in- and out-of-distribution accuracy and calibration" > "$REPORT"
section "## Q1. animal_mnist: test (ID) and its corruptions at severity 3 (OOD, mean of 8)"
report animal_mnist test/acc,eval/corrupt-3/acc animals_id_ood.png --paired-vs linear_probe
section "## Q1. digits: test (ID) and mnist_5k (OOD)"
report digits test/acc,eval/mnist_5k/acc digits_id_ood.png --paired-vs linear_probe
section "## Q2. One block fine-tuned (block_k) vs full fine-tuning, by shift"
python "$OUT/block_heatmap.py" --experiment distribution_shift --fraction 1.0 \
  --out "$OUT/blocks.md" --plot "$OUT/blocks_heatmap.png" >> "$REPORT"
section "### Every block: animal_mnist, ID and the mean of the 8 corruptions (100% of the labels)"
blocks animal_mnist test/acc,eval/corrupt-3/acc
section "### Every block: digits and mnist_5k (100% of the labels)"
blocks digits test/acc,eval/mnist_5k/acc
section "## Q3. Calibration on animal_mnist: ECE before and after temperature scaling, ID and OOD"
report animal_mnist test/ece,test/ece_ts,eval/corrupt-3/ece,eval/corrupt-3/ece_ts \
  animals_ece.png
section "## Q3. Calibration on digits: ECE before and after temperature scaling, ID and OOD"
report digits test/ece,test/ece_ts,eval/mnist_5k/ece,eval/mnist_5k/ece_ts digits_ece.png
section "## Q3. animal_mnist: test NLL before and after temperature scaling, and the temperature"
report animal_mnist test/nll,test/nll_ts,test/temperature animals_nll.png
section "## Q3. digits: test NLL before and after temperature scaling, and the temperature"
report digits test/nll,test/nll_ts,test/temperature digits_nll.png  # the footer ends the report
