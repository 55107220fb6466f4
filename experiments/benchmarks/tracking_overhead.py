"""tracking_overhead: whole `xferlab train` processes with MLflow tracking on vs off.

xferlab has no switch that turns tracking off (no option, no environment variable), so both
variants launch the same small runner, which runs `xferlab.cli.main` as the `xferlab` script
does. With tracking off it first replaces xferlab's tracking calls by no-ops: `tracking.run`
(opening the run on its thread: MLflow's import, the store's opening, the run's creation, its
end), `setup`, `log_params`, `log_metrics`, `set_tags`, `log_missing_epochs`, `ui_links` (the
summary's links: one read of the run), `git_tags` (two git calls for the run's tags), and
`artifacts.log_subset` and `log_run_artifacts` (the dataset input, config, checkpoint files, the
matplotlib plots, the per-class CSV). Each child writes whether mlflow and matplotlib were
imported: the benchmark stops unless tracked runs imported mlflow and untracked ones neither.
What stays in the untracked run is xferlab's own: writing the backbone and head files that the
tracked run then logs (a temporary folder).

Each variant is timed from launch to exit, the whole process: interpreter start, imports
(MLflow's once per process), the store's opening, training, test, artifacts, teardown. The
run: the default backbone (ImageNet EfficientNet-Lite0) fine-tuned (`freeze=full`) on digits
(embedded, small: a run of seconds, so that enough repeats fit), `--epochs` epochs, no
checkpoints (they are not tracking), logging to a project folder's SQLite store that exists
(a warm-up run creates it). MLflow's cost per run is mostly fixed, so the ratio falls as runs
get longer; `extra_s` (tracked minus untracked, per pair) is that cost in seconds.

Tracked and untracked runs alternate (ABBA) until the ratio's 95% interval is narrower than
--margin (0.03: the target is <= 1.03, and only a narrower interval can fall on one side of
it), at least --min-repeats and at most --repeats pairs, stopping before --budget-s. Prints

    RESULT tracking_overhead ratio=<on / off> ci=[lo,hi] extra_s=<on - off> extra_s_ci=[lo,hi]
                             ... ci_narrower_than_margin=<True|False>

    python experiments/benchmarks/tracking_overhead.py [--epochs 5] [--repeats 30]
        [--min-repeats 5] [--budget-s 270] [--margin 0.03] [overrides...]
"""

from __future__ import annotations

import subprocess
import sys
import time

from _bench import (
    arguments,
    child_env,
    difference,
    ensure_sources,
    interleaved,
    median,
    narrower_than,
    project,
    ratio,
    result,
    tail,
)

RUNNER = '''
import os
import sys
from contextlib import contextmanager
from types import SimpleNamespace

from xferlab import tracking
from xferlab.cli import main
from xferlab.tracking import artifacts

if os.environ["BENCH_TRACKING"] == "off":
    @contextmanager
    def untracked_run(*args, **kwargs):
        yield SimpleNamespace(run_id="untracked", run_id_if_open=lambda: "untracked")

    def nothing(*args, **kwargs):
        return None

    tracking.run = untracked_run
    for name in ("setup", "log_params", "log_metrics", "set_tags", "log_missing_epochs",
                 "ui_links"):
        setattr(tracking, name, nothing)
    tracking.git_tags = lambda cwd: {}
    artifacts.log_subset = artifacts.log_run_artifacts = nothing

code = main(sys.argv[1:])
with open(os.environ["BENCH_MARKS"], "a") as f:
    f.write(f"{'mlflow' in sys.modules} {'matplotlib' in sys.modules}\\n")
sys.exit(code)
'''


def main() -> None:
    args = arguments(__doc__, repeats=30, epochs=5, budget_s=270, margin=0.03)
    overrides = ["data=digits", "freeze=full", f"trainer.epochs={args.epochs}",
                 "trainer.checkpoint_every=0", "trainer.progress=false",
                 "tracking.experiment=benchmarks", *args.overrides]
    with project() as folder:
        ensure_sources(overrides, folder)
        marks, log = folder / "marks.txt", folder / "child.log"

        def run(tracking: str) -> float:
            marks.unlink(missing_ok=True)
            env = child_env(BENCH_TRACKING=tracking, BENCH_MARKS=str(marks))
            with log.open("w") as out:
                started = time.perf_counter()
                done = subprocess.run([sys.executable, "-c", RUNNER, "train", *overrides],
                                      cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT,
                                      check=False)
                seconds = time.perf_counter() - started
            if done.returncode:
                sys.exit(f"the {tracking} run failed (exit {done.returncode}):\n{tail(log)}")
            imported = marks.read_text().split()
            if imported != (["True", "True"] if tracking == "on" else ["False", "False"]):
                sys.exit(f"tracking {tracking}, but mlflow and matplotlib imported: {imported}")
            return seconds

        run("on")  # warm-up: creates the store (as on any day but the first), fills caches
        samples = interleaved({"on": lambda: run("on"), "off": lambda: run("off")},
                              args.repeats, min_repeats=args.min_repeats,
                              budget_s=args.budget_s,
                              enough=narrower_than(args.margin, "on", "off"))
    overhead = ratio(samples["on"], samples["off"])
    result("tracking_overhead", overhead,
           extra_s=difference(samples["on"], samples["off"]), on_s=median(samples, "on"),
           off_s=median(samples, "off"), ci_narrower_than_margin=overhead.width < args.margin,
           margin=args.margin, epochs=args.epochs, repeats=overhead.n)


if __name__ == "__main__":
    main()
