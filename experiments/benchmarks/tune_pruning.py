"""What pruning saves: the same 20-trial `xferlab tune` search on the embedded default, once with
the median pruner and once without.

Both runs are fresh studies with the same sampler seed. The script reads them back from their
journals and prints the best val/acc_best each found and the epochs each trained (every epoch a
trial reported), then a last line

    RESULT tune_pruning ratio=<epochs with pruning / without> acc_ratio=<best with / without> ...

Run it from the repository root (sources, studies and runs land under outputs/):

    python experiments/benchmarks/tune_pruning.py                    # 20 trials, lr_wd
    python experiments/benchmarks/tune_pruning.py trainer.epochs=5   # extra train overrides
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import optuna
from optuna.trial import TrialState

from xferlab import tune


def search(pruner: str, study: str, args: argparse.Namespace) -> dict[str, float]:
    """Run one study to its total and measure it."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "xferlab.cli", "tune", f"search={args.search}",
                    "trainer.progress=false", *args.overrides, f"tune.trials={args.trials}",
                    f"tune.pruner={pruner}", f"tune.seed={args.seed}", f"tune.study={study}",
                    f"tune.workers={args.workers}", "tracking.experiment=bench-tune-pruning"],
                   check=True)
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
    parser.add_argument("overrides", nargs="*", help="train overrides, e.g. trainer.epochs=5")
    args = parser.parse_args()
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
