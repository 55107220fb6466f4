"""help: how long each `xferlab <command> --help` takes, as a whole process, against 1 s.

Each command's help is timed from launch to exit, the whole process as a user's shell runs it
(interpreter start, imports, the page written to a pipe that is read, teardown), in a project
folder of its own: `xferlab --help`, then `train`, `pretrain`, `tune`, `rank`, `report`, `ui`
and `runs`. `python -c "print(0)"` is timed the same way, for the interpreter's share.

The commands run in turn, their order reversed every other repeat (ABBA), after one untimed run
of each, `--repeats` times. Each command's line compares its seconds with the budget:

    RESULT help_<command> ratio=<seconds / budget> ci=[lo,hi] seconds=<median> met=<yes|no|?>
                          python_s=<median of python -c "print(0)"> repeats=<n> budget_s=<budget>

`ratio` is the geometric mean of the per-repeat ratios with its 95% interval: met=yes when
the interval's high end is under 1 (every `--help` answers within the budget), no when its low
end is over 1, ? between. The target (issue 20): every help under 1 s.

    python experiments/benchmarks/help.py [--repeats 10] [--budget-s 1] [--commands train,tune]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from _bench import child_env, interleaved, median, project, ratio, result, xferlab

COMMANDS = ("xferlab", "train", "pretrain", "tune", "rank", "report", "ui", "runs")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="default %(default)s")
    parser.add_argument("--budget-s", type=float, default=1.0, help="default %(default)s")
    parser.add_argument("--commands", default=",".join(COMMANDS),
                        help="comma-separated, `xferlab` for the top-level help "
                             "(default: all)")
    args = parser.parse_args()
    commands = [c for c in args.commands.split(",") if c]
    env = child_env()
    with project() as folder:

        def timed(command: list[str]):
            def run() -> float:
                started = time.perf_counter()
                out = subprocess.run(command, cwd=folder, env=env, capture_output=True,
                                     text=True, check=False)
                seconds = time.perf_counter() - started
                if out.returncode != 0 or not out.stdout.strip():
                    sys.exit(f"{' '.join(command)} exited {out.returncode}:\n{out.stderr}")
                return seconds
            return run

        variants = {c: timed(xferlab("--help") if c == "xferlab" else xferlab(c, "--help"))
                    for c in commands}
        variants["python"] = timed([sys.executable, "-c", "print(0)"])
        for run in variants.values():  # untimed: the first run of each warms the disk cache
            run()
        samples = interleaved(variants, args.repeats)
    for command in commands:
        estimate = ratio(samples[command], [args.budget_s] * len(samples[command]))
        met = "yes" if estimate.hi < 1 else "no" if estimate.lo > 1 else "?"
        result(f"help_{command}", estimate, seconds=median(samples, command), met=met,
               python_s=median(samples, "python"), repeats=len(samples[command]),
               budget_s=args.budget_s)


if __name__ == "__main__":
    main()
