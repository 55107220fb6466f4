"""sweep: a linear-probe grid as a user runs it, with the feature cache (auto) vs without (off).

`xferlab train -m experiment=demo freeze=linear_probe data.fraction=0.1,0.5 seed=0,1,2`: the
demo's runs (ImageNet EfficientNet-Lite0 on animal_mnist, 60 steps of 32 images, validated 3
times; joblib, two single-threaded jobs at a time), 6 jobs, timed from launch to exit. Each
sweep runs in a fresh project folder (an empty feature cache and store; the built sources
linked in), so "auto" computes each subset's features once and reuses them across seeds,
and the validation and test features across all jobs. The variants alternate (ABBA) --repeats
times; prints

    RESULT sweep ratio=<off / auto> ci=[lo,hi] ...

the ratio the geometric mean of the per-pair ratios with its 95% interval.

It does not interleave repeats by default: one pair of sweeps takes minutes (an estimated 3 to
4 on 2 idle cores), so the default is one pair and no interval (`ci=[n/a]`); `--repeats 3`
gives one in about three times as long.

    python experiments/benchmarks/sweep.py [--repeats 1] [--fractions 0.1,0.5] [--seeds 0,1,2]
        [overrides...]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

from _bench import (
    child_env,
    ensure_sources,
    interleaved,
    median,
    project,
    ratio,
    result,
    tail,
    xferlab,
)


def sweep(grid: list[str], cache: str) -> float:
    with project() as folder:
        log = folder / "sweep.log"
        with log.open("w") as out:
            started = time.perf_counter()
            done = subprocess.run(xferlab("train", *grid, f"trainer.feature_cache={cache}"),
                                  cwd=folder, env=child_env(), stdout=out,
                                  stderr=subprocess.STDOUT, check=False)
            seconds = time.perf_counter() - started
        if done.returncode:
            sys.exit(f"the sweep with the cache {cache} failed:\n{tail(log)}")
        return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--fractions", default="0.1,0.5")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("overrides", nargs="*", help="more xferlab train overrides")
    args = parser.parse_args()
    grid = ["-m", "experiment=demo", "freeze=linear_probe", f"data.fraction={args.fractions}",
            f"seed={args.seeds}", "trainer.progress=false", "tracking.experiment=benchmarks",
            *args.overrides]
    jobs = len(args.fractions.split(",")) * len(args.seeds.split(","))
    ensure_sources(grid, Path.cwd())  # a source, if the grid needs one, built outside the timings
    if args.repeats < 2:
        print("one pair of sweeps, not interleaved and without an interval: each takes minutes "
              "(--repeats 3 for an interval)", file=sys.stderr)
    samples = interleaved({"off": lambda: sweep(grid, "off"),
                           "auto": lambda: sweep(grid, "auto")}, args.repeats)
    result("sweep", ratio(samples["off"], samples["auto"]), off_s=median(samples, "off"),
           auto_s=median(samples, "auto"), jobs=jobs, repeats=len(samples["off"]))


if __name__ == "__main__":
    main()
