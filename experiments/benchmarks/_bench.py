"""What the benchmarks share: interleaved repeats, a ratio's confidence interval from them,
child processes in a project folder of their own, a train run in this process, the RESULT line."""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from xferlab import tracking
from xferlab.launch.compose import compose_with_choices
from xferlab.recipes import pretrain, train

REPO = Path(__file__).resolve().parents[2]

Measure = Callable[[], "float | dict[str, float]"]


def interleaved(variants: dict[str, Measure], repeats: int, *, min_repeats: int | None = None,
                budget_s: float | None = None,
                enough: Callable[[dict[str, list[float]]], bool] | None = None,
                ) -> dict[str, list[float]]:
    """Every variant's measurements, repeat by repeat. In each repeat every variant runs once,
    back to back, in the given order in even repeats and reversed in odd ones (ABBA): drifts
    in the machine's load, and whatever running first or second costs, hit all variants
    alike, and the i-th values of two variants are a pair (see `ratio`).

    A variant returns one number, or a dict of several named by what they measure (e.g. a
    cold run and the warm run after it, which must stay in that order).

    At most `repeats` repeats. After `min_repeats` of them (default: all), it stops once
    `enough(samples)` holds, or before a repeat that would end past `budget_s` seconds at
    the pace so far. One line per repeat goes to stderr."""
    samples: dict[str, list[float]] = {}
    names = list(variants)
    min_repeats = repeats if min_repeats is None else max(1, min(min_repeats, repeats))
    started = time.perf_counter()
    for i in range(repeats):
        if i >= min_repeats:
            if enough is not None and enough(samples):
                break
            elapsed = time.perf_counter() - started
            if budget_s is not None and elapsed / i * (i + 1) > budget_s:
                print(f"stopping after {i} repeats: another would end past --budget-s "
                      f"{budget_s:g}", file=sys.stderr, flush=True)
                break
        measured: dict[str, float] = {}
        for name in names if i % 2 == 0 else names[::-1]:
            value = variants[name]()
            measured.update(value if isinstance(value, dict) else {name: value})
        for key, value in measured.items():
            samples.setdefault(key, []).append(value)
        print(f"repeat {i + 1}: " + "  ".join(f"{k} {v:.4g}" for k, v in measured.items()),
              file=sys.stderr, flush=True)
    return samples


def median(samples: dict[str, list[float]], name: str) -> float:
    return statistics.median(samples[name])


@dataclass(frozen=True)
class Estimate:
    """A point estimate and its confidence interval (nan when there are too few pairs)."""

    value: float
    lo: float
    hi: float
    n: int

    @property
    def width(self) -> float:
        return self.hi - self.lo

    def ci(self) -> str:
        return "[n/a]" if math.isnan(self.lo) else f"[{self.lo:.3f},{self.hi:.3f}]"


def _t_interval(values: list[float], level: float) -> tuple[float, float, float]:
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan, math.nan
    from scipy.stats import t

    half = t.ppf((1 + level) / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(
        len(values))
    return mean, mean - half, mean + half


def ratio(num: list[float], den: list[float], level: float = 0.95) -> Estimate:
    """num / den for paired measurements (the i-th of each from one repeat of `interleaved`):
    the geometric mean of the per-repeat ratios, and the t-interval of their mean log,
    exponentiated. Pairing takes out of each ratio the load both of its runs shared; the log
    makes the interval of den / num the mirror image of that of num / den."""
    if len(num) != len(den) or not num:
        raise ValueError(f"ratio needs pairs: {len(num)} vs {len(den)} values")
    mean, lo, hi = _t_interval([math.log(a / b) for a, b in zip(num, den, strict=True)], level)
    return Estimate(math.exp(mean), math.exp(lo), math.exp(hi), len(num))


def difference(a: list[float], b: list[float], level: float = 0.95) -> Estimate:
    """a - b for paired measurements: the mean per-repeat difference and its t-interval."""
    if len(a) != len(b) or not a:
        raise ValueError(f"difference needs pairs: {len(a)} vs {len(b)} values")
    return Estimate(*_t_interval([x - y for x, y in zip(a, b, strict=True)], level), len(a))


def narrower_than(margin: float, num: str, den: str) -> Callable[[dict[str, list[float]]], bool]:
    """For `interleaved(enough=...)`: whether the ratio's interval is narrower than `margin`
    (e.g. 0.03 for a target of <= 1.03: only then can the interval fall on one side of it)."""
    def enough(samples: dict[str, list[float]]) -> bool:
        if len(samples.get(num, ())) < 2:
            return False
        return ratio(samples[num], samples[den]).width < margin
    return enough


def result(name: str, main: Estimate | float | None = None, **fields: object) -> None:
    """`RESULT <name> ratio=<main> ci=[lo,hi] field=value ...`; an Estimate field `f` prints as
    `f=<x> f_ci=[lo,hi]`."""
    parts = [f"RESULT {name}"]
    if main is not None:
        parts.append(_field("ratio", main, ci_name="ci"))
    parts += [_field(k, v) for k, v in fields.items()]
    print(" ".join(parts), flush=True)


def _field(name: str, value: object, ci_name: str | None = None) -> str:
    if isinstance(value, Estimate):
        return f"{name}={value.value:.3f} {ci_name or name + '_ci'}={value.ci()}"
    return f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"


def arguments(doc: str, *, repeats: int, epochs: int | None = None,
              budget_s: float | None = None, margin: float | None = None) -> argparse.Namespace:
    """--repeats, --epochs where the benchmark trains, --min-repeats, --budget-s and --margin
    where it repeats until its ratio's interval is narrower than the margin, and any more
    `xferlab train` overrides."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=repeats,
                        help=f"repeats{' (at most)' if budget_s else ''} (default {repeats})")
    if epochs is not None:
        parser.add_argument("--epochs", type=int, default=epochs)
    if budget_s is not None:
        parser.add_argument("--min-repeats", type=int, default=5)
        parser.add_argument("--budget-s", type=float, default=budget_s,
                            help="stop repeating before this many seconds (default %(default)s)")
    if margin is not None:
        parser.add_argument("--margin", type=float, default=margin,
                            help="repeat until the ratio's 95%% interval is narrower than this "
                                 "(default %(default)s)")
    parser.add_argument("overrides", nargs="*", help="more xferlab train overrides")
    return parser.parse_args()


# ---- runs in this process


def train_run(overrides: list[str]) -> tuple[float, train.Result]:
    """Seconds of one `xferlab train` run in this process (start-up excluded), and its result."""
    cfg, choices = compose_with_choices(overrides)
    pretrain.ensure([cfg])  # a source is built once, before any timing
    started = time.perf_counter()
    result = train.train(cfg, tracking.Launch(choices=choices, overrides=overrides))
    return time.perf_counter() - started, result


@contextmanager
def in_folder(folder: Path) -> Iterator[None]:
    """Work in `folder` (a project's outputs/ are relative to the working directory)."""
    previous = Path.cwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(previous)


# ---- child processes


@contextmanager
def project() -> Iterator[Path]:
    """A fresh project folder, removed after: its own outputs/ (MLflow store, feature cache,
    runs), with outputs/sources linked to the current folder's so that a source is built once
    for every benchmark and run."""
    sources = Path("outputs/sources").resolve()
    sources.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="xferlab-bench-") as tmp:
        (Path(tmp) / "outputs").mkdir()
        (Path(tmp) / "outputs" / "sources").symlink_to(sources)
        yield Path(tmp)


def child_env(*first: str | Path, **extra: str) -> dict[str, str]:
    """This environment for a child: `first`, then this checkout, then what PYTHONPATH held
    (so the code benchmarked is this checkout's, wherever the child runs), and `extra`."""
    path = [str(p) for p in (*first, REPO)]
    if os.environ.get("PYTHONPATH"):
        path.append(os.environ["PYTHONPATH"])
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path), **extra}


def xferlab(*args: str) -> list[str]:
    """`xferlab <args>` as a user types it: the console script beside this interpreter, else
    `python -m xferlab.cli`."""
    script = Path(sys.executable).with_name("xferlab")
    return [str(script), *args] if script.is_file() else [sys.executable, "-m", "xferlab.cli",
                                                          *args]


ENSURE_SOURCES = """
import sys
from xferlab.recipes import pretrain
from xferlab.launch.compose import compose, job_overrides
pretrain.ensure([compose(job) for job in job_overrides(sys.argv[1:], multirun=True)])
"""


def ensure_sources(overrides: list[str], cwd: Path) -> None:
    """Build the sources the runs of `overrides` (a grid too) need, before any timing."""
    subprocess.run([sys.executable, "-c", ENSURE_SOURCES,
                    *[o for o in overrides if o not in ("-m", "--multirun")]],
                   cwd=cwd, env=child_env(), check=True, stdout=subprocess.DEVNULL)


def tail(path: Path, chars: int = 3000) -> str:
    return path.read_text(errors="replace")[-chars:] if path.is_file() else "(no output)"
