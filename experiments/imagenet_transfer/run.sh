#!/usr/bin/env bash
# The ImageNet-transfer study (README.md beside this file): ImageNet EfficientNet-Lite0 on
# animal_mnist (5 strategies x 5 fractions x 3 seeds) and elpv (4 x 2 x 3), then the tables.
# Run from the repository root with .venv set up (make test): bash experiments/imagenet_transfer/run.sh
set -euo pipefail
OUT=experiments/imagenet_transfer
XL=${XL:-xferlab}

if [[ "${1:-}" != --report-only ]]; then  # --report-only: tables and plots from the stored runs
  $XL train -m experiment=imagenet_transfer freeze=scratch,linear_probe,last_k,lp_ft,full \
    data.fraction=0.01,0.03,0.1,0.3,1.0 seed=0,1,2
  $XL train -m experiment=imagenet_transfer data=elpv freeze=scratch,linear_probe,lp_ft,full \
    data.fraction=0.1,1.0 seed=0,1,2
fi

REPORT=$OUT/report.md
report() {  # add a table of the study's runs to report.md: report <data.name> <metric> <plot> [...]
  # --append: the report's one provenance footer (each command, its runs and their commits)
  # moves below the new table, so whatever run.sh writes in between stays above it
  $XL report --experiment imagenet_transfer --where "data.name=$1" --metric "$2" \
    --rows freeze --cols data.fraction --paired-vs scratch --plot "$OUT/$3" "${@:4}" \
    --out "$REPORT" --append > /dev/null
}
section() { printf '\n%s\n\n' "$1" >> "$REPORT"; }  # a heading

echo "# ImageNet transfer: EfficientNet-Lite0 (ImageNet-1k) on small real tasks" > "$REPORT"
section "## animal_mnist: test accuracy"
report animal_mnist test/acc animal_mnist_accuracy.png
section "## animal_mnist: test balanced accuracy"
report animal_mnist test/balanced_acc animal_mnist_balanced_accuracy.png
section "## Time to a validation accuracy: animal_mnist, 100% of the labels"
python $OUT/time_to_target.py --experiment imagenet_transfer --where data.name=animal_mnist \
  --fraction 1.0 --target 0.9 --out "$OUT/time_to_target.md" --plot "$OUT/accuracy_vs_time.png" \
  >> "$REPORT"
section "## elpv (binary: defective or not): test balanced accuracy"
report elpv test/balanced_acc elpv_balanced_accuracy.png
section "## elpv: test macro-F1"
report elpv test/macro_f1 elpv_macro_f1.png  # the last table: the footer ends the report
