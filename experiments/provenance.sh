#!/usr/bin/env bash
# The provenance footer of a committed report: provenance.sh <command> <ISO start time> <experiment>
# Prints the command, the commit (and whether the tree was clean), when the runs were made and
# where they are, so a reader can tell what produced the tables above it.
set -euo pipefail
state=$(git status --porcelain --untracked-files=no | grep -q . && echo dirty || echo clean)
echo "---"
echo "Produced by \`$1\` at commit $(git rev-parse --short HEAD) ($state tree)," \
  "runs from $2 to $(date -u +%FT%TZ), MLflow experiment \`$3\` in outputs/mlflow.db on a" \
  "$(nproc)-core CPU."
