#!/usr/bin/env bash
# The README's screenshots, from a real browser on a real demo store:
#   python experiments/benchmarks/demo.py --keep /tmp/demo   # the demo grid, its store kept
#   bash docs/screenshots.sh /tmp/demo docs                   # runs table and one run's charts
# Needs Debian's chromium (apt-get install chromium). The UI is xferlab's own `xferlab ui`.
set -euo pipefail
PROJECT=$(realpath "$1"); OUT=$(realpath "${2:-docs}"); PORT=${PORT:-5055}
XL=${XL:-xferlab}
cd "$PROJECT"
$XL ui --port "$PORT" > /dev/null 2>&1 &
UI=$!
trap 'kill $UI 2>/dev/null || true' EXIT
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$PORT/health" > /dev/null && break; sleep 1; done
# the demo experiment and its full fine-tuning run on all the labels
read -r EXP RUN < <(python - <<'PY'
from mlflow.tracking import MlflowClient
client = MlflowClient("sqlite:///outputs/mlflow.db")
exp = client.get_experiment_by_name("demo")
runs = client.search_runs([exp.experiment_id], "params.`freeze.strategy` = 'full' and "
                          "params.`data.fraction` = '1.0'", max_results=1)
print(exp.experiment_id, runs[0].info.run_id)
PY
)
shot() {  # shot <file> <url>: the page as a 1920x1080 browser window shows it, once it has drawn
  chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$(mktemp -d)" --hide-scrollbars --window-size=1920,1080 \
    --virtual-time-budget=20000 --screenshot="$OUT/$1" "$2" 2> /dev/null
}
UIURL="http://127.0.0.1:$PORT"
shot ui_runs.png "$UIURL/#/experiments/$EXP/runs?workflowType=machine_learning"
shot ui_run_charts.png "$UIURL/#/experiments/$EXP/runs/$RUN/model-metrics?workflowType=machine_learning"
echo "wrote $OUT/ui_runs.png and $OUT/ui_run_charts.png (experiment $EXP, run $RUN)"
