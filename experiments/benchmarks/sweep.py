"""sweep: a 12-job multirun grid of linear-probe runs, as a user runs it vs with the cache off.

`xferlab train -m experiment=demo freeze=linear_probe data.fraction=0.1,0.25,0.5,1.0
seed=0,1,2` (joblib, two jobs at a time, 100 steps each) on the embedded default, wall time
from launch to exit. Each repeat starts from an empty feature cache in a fresh project folder
(the built sources are linked in), so "auto" pays for computing the features once per subset
and reuses them across seeds and for the test split. The variants alternate; prints
`RESULT sweep ratio=<off / auto> ...`.

    python experiments/benchmarks/sweep.py [--repeats 1] [overrides...]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _bench import arguments, interleaved, result

GRID = ["-m", "experiment=demo", "freeze=linear_probe", "data.fraction=0.1,0.25,0.5,1.0",
        "seed=0,1,2", "tracking.experiment=benchmarks"]


def sweep(cache: str, overrides: list[str]) -> float:
    with tempfile.TemporaryDirectory() as project:
        (Path(project) / "outputs").mkdir()
        (Path(project) / "outputs" / "sources").symlink_to(Path("outputs/sources").resolve())
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "xferlab.cli", "train", *GRID,
                        f"trainer.feature_cache={cache}", "trainer.progress=false", *overrides],
                       cwd=project, check=True, stdout=subprocess.DEVNULL,
                       env={**os.environ, "PYTHONPATH": str(Path.cwd())})
        return time.perf_counter() - started


def main() -> None:
    args = arguments(__doc__, repeats=1)
    subprocess.run([sys.executable, "-m", "xferlab.cli", "pretrain"], check=True,
                   stdout=subprocess.DEVNULL)  # the source, built once outside the timings
    times = interleaved({"off": lambda: sweep("off", args.overrides),
                         "auto": lambda: sweep("auto", args.overrides)}, args.repeats)
    result("sweep", times["off"] / times["auto"], off_s=times["off"], auto_s=times["auto"],
           jobs=12, repeats=args.repeats)


if __name__ == "__main__":
    main()
