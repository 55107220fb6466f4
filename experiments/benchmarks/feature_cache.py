"""feature_cache: a linear-probe run with the frozen-feature cache vs the same run without it.

All are whole `xferlab train` runs in this process (data, model, MLflow logging, test and
artifacts included; the process's start-up is not: it is the same for all) in a project folder
of their own: the default backbone (ImageNet EfficientNet-Lite0) probed (`freeze=linear_probe`)
on digits at 100% for 20 epochs. Three variants:

- off: `trainer.feature_cache=off`, the backbone runs every step and every validation;
- cold: `auto` with the project's cache folder (outputs/cache/features) deleted just before,
  so it computes every feature, as the first job of a sweep does;
- warm: `auto` right after the cold run, which left every feature it needs in the cache
  (checked: it adds no entry).

Each repeat runs off and the cold-warm couple, in alternating order (ABBA), after one untimed
warm-up run (imports, the store). Every run must reach the same test accuracy. Prints

    RESULT feature_cache ratio=<off / warm> ci=[lo,hi] cold_ratio=<off / cold> ...

each ratio the geometric mean of the per-repeat ratios with its 95% interval (target:
ratio >= 10, identical accuracy).

    python experiments/benchmarks/feature_cache.py [--epochs 20] [--repeats 5] [overrides...]
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from _bench import arguments, in_folder, interleaved, median, project, ratio, result, train_run

CACHE = Path("outputs/cache/features")  # xferlab.features.CACHE_DIR, in the project folder


def main() -> None:
    args = arguments(__doc__, repeats=5, epochs=20)
    base = ["data=digits", "freeze=linear_probe", "data.fraction=1.0", "trainer.progress=false",
            "tracking.experiment=benchmarks", *args.overrides]
    accuracies = set()

    def run(cache: str, *more: str) -> float:
        seconds, outcome = train_run([*base, *(more or [f"trainer.epochs={args.epochs}"]),
                                      f"trainer.feature_cache={cache}"])
        accuracies.add(round(outcome.test_acc, 6))
        return seconds

    def cold_then_warm() -> dict[str, float]:
        shutil.rmtree(CACHE, ignore_errors=True)
        cold = run("auto")
        entries = sorted(CACHE.iterdir()) if CACHE.is_dir() else []
        if not entries:
            sys.exit(f"the cold run left nothing in {CACHE.resolve()}: no cache was used")
        warm = run("auto")
        if sorted(CACHE.iterdir()) != entries:
            sys.exit("the warm run computed features the cold run had left in the cache")
        return {"cold": cold, "warm": warm}

    with project() as folder, in_folder(folder):
        run("auto", "trainer.epochs=1")  # warm-up, untimed
        accuracies.clear()
        samples = interleaved({"off": lambda: run("off"), "cache": cold_then_warm},
                              args.repeats)
    result("feature_cache", ratio(samples["off"], samples["warm"]),
           cold_ratio=ratio(samples["off"], samples["cold"]), off_s=median(samples, "off"),
           warm_s=median(samples, "warm"), cold_s=median(samples, "cold"),
           identical_acc=len(accuracies) == 1, test_acc=max(accuracies), epochs=args.epochs,
           repeats=len(samples["off"]))


if __name__ == "__main__":
    main()
