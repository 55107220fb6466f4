"""What the benchmarks share: interleaved timing, a train run in this process, the RESULT line."""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

from xferlab.recipes import common, pretrain, train
from xferlab.recipes.compose import compose_with_choices


def interleaved(variants: dict[str, Callable[[], float]], repeats: int) -> dict[str, float]:
    """Median of each variant's measurements, the variants alternating `repeats` times so that
    drifts in machine load hit all of them alike."""
    samples: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, measure in variants.items():
            samples[name].append(measure())
    return {name: statistics.median(values) for name, values in samples.items()}


def train_run(overrides: list[str]) -> tuple[float, train.Result]:
    """Seconds of one `xferlab train` run in this process (start-up excluded), and its result."""
    cfg, choices = compose_with_choices(overrides)
    pretrain.ensure([cfg])  # a source is built once, before any timing
    started = time.perf_counter()
    result = train.train(cfg, common.Launch(choices=choices, overrides=overrides))
    return time.perf_counter() - started, result


def result(name: str, ratio: float, **fields: object) -> None:
    extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in fields.items())
    print(f"RESULT {name} ratio={ratio:.2f} {extra}", flush=True)


def arguments(doc: str, *, repeats: int, epochs: int | None = None) -> argparse.Namespace:
    """--repeats, --epochs where the benchmark trains, and any more `xferlab train` overrides."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=repeats)
    if epochs is not None:
        parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("overrides", nargs="*", help="more xferlab train overrides")
    return parser.parse_args()
