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

report() {  # a table of the study's runs: report <data.name> <metric> <plot> [extra args]
  $XL report --experiment imagenet_transfer --where "data.name=$1" --metric "$2" \
    --rows freeze --cols data.fraction --paired-vs scratch --plot "$OUT/$3" "${@:4}"
}
{
  echo "# ImageNet transfer: EfficientNet-Lite0 (ImageNet-1k) on small real tasks"
  echo
  echo "## animal_mnist: test accuracy"
  report animal_mnist test/acc animal_mnist_accuracy.png
  echo
  echo "## animal_mnist: test balanced accuracy"
  report animal_mnist test/balanced_acc animal_mnist_balanced_accuracy.png
  echo
  echo "## elpv (binary: defective or not): test balanced accuracy"
  report elpv test/balanced_acc elpv_balanced_accuracy.png
  echo
  echo "## elpv: test macro-F1"
  report elpv test/macro_f1 elpv_macro_f1.png
  echo
  echo "## Time to a validation accuracy: animal_mnist, 100% of the labels"
  echo
  python $OUT/time_to_target.py --experiment imagenet_transfer --where data.name=animal_mnist \
    --fraction 1.0 --target 0.9 --out "$OUT/time_to_target.md" --plot "$OUT/accuracy_vs_time.png"
  echo
  bash experiments/provenance.sh "bash $OUT/run.sh" imagenet_transfer
} > "$OUT/report.md"
