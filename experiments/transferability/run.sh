#!/usr/bin/env bash
# The transferability study: 8 candidate sources, all built by xferlab, scored by `xferlab rank`
# and fine-tuned on digits at 5% and 25% with 3 seeds; `xferlab report --rank` gives the tau.
# Run from the repository root: bash experiments/transferability/run.sh [--report-only]
set -euo pipefail
EXP=tracking.experiment=transferability
LETTERS=ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz
# the candidates, as three override sets (Hydra sweeps take products, the candidates are not one)
RESNET18_SOURCES=(backbone=resnet18 "backbone.source_overrides=[\"trainer.max_steps=50\"],[\"trainer.max_steps=200\"],[],[\"data.charset=$LETTERS\",\"data.num_classes=52\"],[\"data.charset=%+@?*\$|-.\",\"data.num_classes=9\"]")
SMALL_ARCHS=(backbone=resnet_tiny,vit_tiny backbone.pretrained=source:glyphs)
RANDOM_INIT=(backbone=resnet18 backbone.pretrained=none)

XL=${XL:-xferlab}

if [[ "${1:-}" != --report-only ]]; then  # --report-only: the report from the stored runs
  for candidates in RESNET18_SOURCES SMALL_ARCHS RANDOM_INIT; do
    declare -n set=$candidates
    # scoring first: it builds every source the candidates need, once
    $XL rank "${set[@]}" data=digits data.fraction=0.05,0.25 trainer.threads=2 $EXP
    $XL train -m experiment=glyph_digits freeze=full "${set[@]}" data.fraction=0.05,0.25 \
      seed=0,1,2 $EXP
  done
fi

# --out writes the tables and, below them, their provenance (command, runs, commits, dates)
$XL report --experiment transferability --rank --cols data.fraction --min-n 3 \
  --rows backbone,backbone.pretrained,backbone.source_overrides \
  --out experiments/transferability/report.md
