"""demo: `make demo`'s grid as a user waits for it, and the share spent outside training steps.

`xferlab train -m experiment=demo freeze=scratch,linear_probe,full data.fraction=0.01,0.1,1.0`
(the Makefile's command, after installation: 9 jobs, joblib, two single-threaded jobs at a time)
in a fresh project folder (empty store and feature cache), timed from launch to exit. From the
store it then reads each run's training-step time (the sum of its `time/epoch_s`: the steps
alone, validation excluded) and prints

    RESULT demo wall_s=<launch to exit> outside_share=<1 - step time / (wall x jobs at a time)>
        steps_s=<summed step time> runs=<n> ...

`outside_share` is the part of the two cores' time not spent in training steps: process and
import start-up, data and model loading, feature extraction, validation, the evaluation at the
end, tracking and plots. Each repeat is the same measurement (no variants to interleave); with
--repeats > 1 the figures are medians and an interval of the wall time is printed.

    python experiments/benchmarks/demo.py [--repeats 1] [--keep DIR] [overrides...]

--keep DIR runs the last repeat's project in DIR and leaves it there: a real demo
store to open with `xferlab ui` (the README's screenshots come from one).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _bench import REPO, child_env, project, result, tail, xferlab
from mlflow.tracking import MlflowClient


def demo_grid() -> list[str]:
    """The `xferlab train -m ...` arguments of the Makefile's demo target."""
    makefile = (REPO / "Makefile").read_text()
    found = re.search(r"^\t\$\(BIN\)/xferlab train (-m experiment=demo[^\n]*)$", makefile, re.M)
    if found is None:
        sys.exit("the Makefile's demo target has no `xferlab train -m experiment=demo` line")
    return found[1].split()


@contextmanager
def kept(folder: Path) -> Iterator[Path]:
    """`folder` emptied and made a project like `project()`'s, left in place (the artifacts'
    URIs in the store are absolute: the store is only whole where it was written)."""
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "outputs").mkdir(parents=True)
    (folder / "outputs" / "sources").symlink_to(Path("outputs/sources").resolve())
    yield folder.resolve()


def once(grid: list[str], keep: Path | None) -> dict[str, float]:
    with kept(keep) if keep is not None else project() as folder:
        log = folder / "demo.log"
        with log.open("w") as out:
            started = time.perf_counter()
            done = subprocess.run(xferlab("train", *grid), cwd=folder, env=child_env(),
                                  stdout=out, stderr=subprocess.STDOUT, check=False)
            wall = time.perf_counter() - started
        if done.returncode:
            sys.exit(f"the demo grid failed:\n{tail(log)}")
        client = MlflowClient(f"sqlite:///{folder}/outputs/mlflow.db")
        experiment = client.get_experiment_by_name("demo")
        runs = [r for r in client.search_runs([experiment.experiment_id])
                if "sweep.job" in r.data.tags]  # the jobs, not the sweep's parent run
        steps = sum(m.value for r in runs
                    for m in client.get_metric_history(r.info.run_id, "time/epoch_s"))
        # jobs at a time: conf/experiment/demo.yaml's n_jobs (2), unless an override changes it
        parallel = int(next(o.split("=")[1] for o in [*grid, "hydra.launcher.n_jobs=2"]
                            if o.startswith("hydra.launcher.n_jobs=")))
        return {"wall_s": wall, "steps_s": steps, "runs": len(runs),
                "outside_share": 1 - steps / (wall * parallel)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--keep", type=Path, default=None,
                        help="run the last repeat's project here and keep it")
    parser.add_argument("overrides", nargs="*", help="more xferlab train overrides")
    args = parser.parse_args()
    grid = [*demo_grid(), "trainer.progress=false", *args.overrides]
    print("timing: xferlab train " + " ".join(grid), file=sys.stderr)
    samples = [once(grid, args.keep if i == args.repeats - 1 else None)
               for i in range(args.repeats)]

    def middle(key: str) -> float:
        values = sorted(s[key] for s in samples)
        return values[len(values) // 2]

    walls = [s["wall_s"] for s in samples]
    result("demo", wall_s=round(middle("wall_s"), 1),
           outside_share=round(middle("outside_share"), 3),
           steps_s=round(middle("steps_s"), 1), runs=int(middle("runs")),
           wall_range=f"[{min(walls):.1f},{max(walls):.1f}]", repeats=len(samples))


if __name__ == "__main__":
    main()
