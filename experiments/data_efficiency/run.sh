#!/usr/bin/env bash
# The data-efficiency study (README.md beside this file): the glyph-pretrained ResNet-18 on digits,
# 5 strategies x 5 fractions x 5 seeds, then report.md (its provenance footer written by
# `xferlab report --out`) and the plot.
# Run from the repository root with .venv set up (make test): bash experiments/data_efficiency/run.sh
set -euo pipefail
OUT=experiments/data_efficiency
XL=${XL:-xferlab}

if [[ "${1:-}" != --report-only ]]; then  # --report-only: the table and plot from the stored runs
  $XL train -m experiment=data_efficiency freeze=scratch,linear_probe,last_k,lp_ft,full \
    data.fraction=0.01,0.05,0.1,0.25,1.0 seed=0,1,2,3,4
fi
$XL report --experiment data_efficiency --rows freeze --cols data.fraction --metric test/acc \
  --paired-vs scratch --plot "$OUT/accuracy_vs_fraction.png" --log --parent latest \
  --out "$OUT/report.md"
