"""What pruning saves: the same 20-trial `xferlab tune` search, once with the median pruner and
once without.

Both runs are fresh studies with the same sampler seed. The script reads them back from their
journals and prints the best val/acc_best each found and the epochs each trained (every epoch a
trial reported), then a last line

    RESULT tune_pruning ratio=<epochs with pruning / without> acc_ratio=<best with / without> ...

Without train overrides, the trials train timm's tiny test ResNet on digits at 50% for 6 epochs
(`backbone=resnet_tiny data=digits data.fraction=0.5 trainer.epochs=6`), so that both searches
fit in minutes on 2 CPU cores; any override given replaces that whole set.

It does not interleave repeats: `ratio` and `acc_ratio` are counts of epochs and accuracies,
the same every time for a sampler seed on CPU (rerunning reproduces them, it does not sample
any noise), and each search takes minutes. Only `wall_ratio` is a timing, from one pair of
searches run one after the other: indicative, without an interval.

Run it from the repository root (sources, studies and runs land under outputs/):

    python experiments/benchmarks/tune_pruning.py                    # 20 trials, lr_wd
    python experiments/benchmarks/tune_pruning.py trainer.epochs=5   # train overrides instead
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import optuna
from _bench import child_env, ensure_sources
from optuna.trial import TrialState

from xferlab import tune

SMALL = ["backbone=resnet_tiny", "data=digits", "data.fraction=0.5", "trainer.epochs=6"]


def search(pruner: str, study: str, args: argparse.Namespace) -> dict[str, float]:
    """Run one study to its total and measure it."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "xferlab.cli", "tune", f"search={args.search}",
                    "trainer.progress=false", *args.overrides, f"tune.trials={args.trials}",
                    f"tune.pruner={pruner}", f"tune.seed={args.seed}", f"tune.study={study}",
                    f"tune.workers={args.workers}", "tracking.experiment=bench-tune-pruning"],
                   check=True, env=child_env())
    wall = time.perf_counter() - started
    trials = optuna.load_study(study_name=study,
                               storage=tune.open_storage(tune.default_storage(study))).trials
    return {"best": max(t.value for t in trials if t.state == TrialState.COMPLETE),
            "epochs": sum(len(t.intermediate_values) for t in trials),
            "pruned": sum(t.state == TrialState.PRUNED for t in trials), "wall_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--search", default="lr_wd", help="a conf/search/ name (default lr_wd)")
    parser.add_argument("--seed", type=int, default=0, help="the samplers' seed, for both")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("overrides", nargs="*",
                        help=f"train overrides (default: {' '.join(SMALL)})")
    args = parser.parse_args()
    args.overrides = args.overrides or SMALL
    ensure_sources(args.overrides, Path.cwd())  # a source, if needed, outside the timings
    print("one pair of searches, not interleaved: ratio and acc_ratio are counts and accuracies, "
          "reproduced by any rerun; wall_ratio is one pair's, indicative", file=sys.stderr)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    pruned, full = (search(p, f"bench-{stamp}-{p}", args) for p in ("median", "none"))
    for name, r in (("median pruner", pruned), ("no pruning", full)):
        print(f"{name:>13}: best val/acc_best {r['best']:.4f}, {r['epochs']} epochs, "
              f"{r['pruned']} of {args.trials} trials pruned, {r['wall_s']:.0f} s")
    print(f"RESULT tune_pruning ratio={pruned['epochs'] / full['epochs']:.2f} "
          f"acc_ratio={pruned['best'] / full['best']:.3f} epochs_pruned={pruned['epochs']} "
          f"epochs_full={full['epochs']} best_pruned={pruned['best']:.4f} "
          f"best_full={full['best']:.4f} wall_ratio={pruned['wall_s'] / full['wall_s']:.2f} "
          f"trials={args.trials} search={args.search} overrides={','.join(args.overrides) or '-'}")


if __name__ == "__main__":
    main()
