#!/usr/bin/env bash
# The provenance footer of a committed report: provenance.sh <command> <experiment>
# Names the command, the commit the runs were made at (read from their git.commit / git.dirty
# tags, so a report rewritten later still names the code that trained), the commit that wrote
# the report, the dates and the runs, so a reader can tell what produced the tables above it.
set -euo pipefail
runs=$(python - "$2" <<'PY'
import collections, sys
from datetime import datetime, timezone
from mlflow.tracking import MlflowClient
from xferlab.tracking import resolve_uri
client = MlflowClient(resolve_uri(None))
experiment = client.get_experiment_by_name(sys.argv[1])
runs = client.search_runs([experiment.experiment_id], "attributes.status = 'FINISHED'",
                          max_results=50000)
runs = [r for r in runs if r.data.tags.get("kind") not in ("sweep", "rank", "study")]
commits = collections.Counter(f"{r.data.tags.get('git.commit', '?')[:7]}"
                              f"{' (dirty)' if r.data.tags.get('git.dirty') == 'True' else ''}"
                              for r in runs)
def utc(ms):
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
print(f"{len(runs)} FINISHED runs at commit {', '.join(f'{c} ({n})' for c, n in commits.items())}, "
      f"from {utc(min(r.info.start_time for r in runs))} to "
      f"{utc(max(r.info.end_time for r in runs))}")
PY
)
# the report and its plots are being rewritten now: only code and configs count
state=$(git status --porcelain --untracked-files=no -- . ':(exclude)*.md' ':(exclude)*.png' \
  | grep -q . && echo dirty || echo clean)
echo "---"
echo "**Provenance.** Command: \`$1\`. Runs: $runs, MLflow experiment \`$2\` in"
echo "outputs/mlflow.db, on a $(nproc)-core CPU. Report written at commit"
echo "$(git rev-parse --short HEAD) ($state tree) on $(date -u +%FT%TZ)."
