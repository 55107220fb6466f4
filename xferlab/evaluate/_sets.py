"""The evaluation sets of `data.eval_sets`, and a trained model's final measurement.

`build_sets` makes every set once, before training; `set_metrics` measures them (every epoch with
`trainer.eval_every_epoch`); `evaluate_final` measures test and the sets with the best weights,
calibration before and after temperature scaling fitted on validation. The model is seen only
through `logits_of(images)`, which the recipe gives (through the feature cache where the backbone
never moved), so this module knows no model, device or cache.
"""

from __future__ import annotations

import pathlib
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

from xferlab import data
from xferlab.config import DataConfig
from xferlab.data._core import Split, to_images
from xferlab.evaluate import ALL_CORRUPTIONS, CORRUPTIONS, class_mismatch, corruptions, parse
from xferlab.evaluate._metrics import (
    Reliability,
    calibration,
    class_metrics,
    fit_temperature,
    reliability,
)

# images (N, C, H, W) uint8, in memory or read on demand -> logits (N, K)
Logits = Callable[[Any], torch.Tensor]


@dataclass
class EvalSet:
    name: str  # as logged: eval/<name>/<metric>
    images: torch.Tensor
    labels: torch.Tensor


def build_sets(names: list[str], *, test: Split, classes: list[str], image_size: int,
               in_chans: int, seed: int, cache_dir: pathlib.Path) -> list[EvalSet]:
    """Every set `names` stands for, in the target's image format: a dataset whole (none of
    it was trained on), a corruption of the test split drawn from `seed` (the same images for
    the same seed, whatever else is evaluated)."""
    sets = []
    # corrupt-<s> stands for every corruption; a set named twice is measured once
    for name in dict.fromkeys(each for asked in names for each in corruptions(asked) or [asked]):
        parsed = parse(name)
        if parsed is None:
            sets.append(_dataset(name, classes, image_size=image_size, in_chans=in_chans,
                                 seed=seed, cache_dir=cache_dir))
            continue
        if not isinstance(test.images, torch.Tensor):
            raise data.DataError(f"data.eval_sets: {name!r} corrupts the test split, but it is "
                                 "read on demand: use data.loader=memory")
        generator = torch.Generator().manual_seed(zlib.crc32(f"{seed}/{name}".encode()))
        sets.append(EvalSet(name, CORRUPTIONS[parsed[0]](test.images, parsed[1], generator),
                            test.labels))
    return sets


def _dataset(name: str, classes: list[str], *, image_size: int, in_chans: int, seed: int,
             cache_dir: pathlib.Path) -> EvalSet:
    """All the images of the data kind `name` (its own splits joined), checked for classes."""
    option = data.DATA_KINDS.build(name, asdict(DataConfig()))
    loaded = option.load(name=name, image_size=image_size, in_chans=in_chans, seed=seed,
                         cache_dir=cache_dir, loader="memory")
    if loaded.classes != classes:
        raise data.DataError(class_mismatch(name, loaded.classes, "the target", classes))
    splits = [s for s in (loaded.pool, loaded.val, loaded.test) if s is not None]
    if not all(isinstance(s.images, torch.Tensor) for s in splits):
        raise data.DataError(f"data.eval_sets: {name!r} is read on demand; an evaluation set "
                             "must fit in memory")
    images = torch.cat([to_images(s.images, in_chans=in_chans, image_size=image_size)
                        for s in splits if isinstance(s.images, torch.Tensor)])
    return EvalSet(name, images, torch.cat([s.labels for s in splits]))


def _measure(logits: torch.Tensor, labels: torch.Tensor, temperature: float | None
             ) -> dict[str, float]:
    """acc, balanced_acc, macro_f1, nll, ece, brier; with a temperature, nll_ts and ece_ts."""
    metrics = {**class_metrics(logits.argmax(1), labels, logits.shape[1]),
               **calibration(logits, labels)}
    if temperature is not None:
        scaled = calibration(logits / temperature, labels)
        metrics.update(nll_ts=scaled["nll"], ece_ts=scaled["ece"])
    return metrics


def set_metrics(logits_of: Logits, sets: list[EvalSet],
                temperature: float | None = None) -> dict[str, float]:
    """`eval/<set>/<metric>` for every set, and for corrupt-<s> the mean over its corruptions."""
    out: dict[str, dict[str, float]] = {s.name: _measure(logits_of(s.images), s.labels,
                                                         temperature) for s in sets}
    by_severity: dict[str, list[dict[str, float]]] = {}
    for name, metrics in out.items():
        parsed = parse(name)
        if parsed is not None:
            by_severity.setdefault(f"{ALL_CORRUPTIONS}-{parsed[1]}", []).append(metrics)
    for name, group in by_severity.items():
        if len(group) == len(CORRUPTIONS):  # all of them were asked for (corrupt-<s>)
            out[name] = {k: sum(m[k] for m in group) / len(group) for k in group[0]}
    return {f"eval/{name}/{k}": v for name, metrics in out.items() for k, v in metrics.items()}


@dataclass
class Final:
    metrics: dict[str, float]  # test/*, eval/*/*: what the run logs
    pred: torch.Tensor  # test predictions, for the confusion matrix
    before: Reliability  # test's reliability diagram, before and after temperature scaling
    after: Reliability


def evaluate_final(logits_of: Logits, *, val: Split, test: Split,
                   sets: list[EvalSet]) -> Final:
    """Test and every evaluation set, with the weights `logits_of` uses (the best ones)."""
    temperature = fit_temperature(logits_of(val.images), val.labels)
    test_logits = logits_of(test.images)
    metrics = {f"test/{k}": v for k, v in _measure(test_logits, test.labels, temperature).items()}
    metrics["test/loss"] = metrics["test/nll"]  # the name of earlier runs and reports
    metrics["test/temperature"] = temperature
    metrics.update(set_metrics(logits_of, sets, temperature))
    return Final(metrics, test_logits.argmax(1), reliability(test_logits, test.labels),
                 reliability(test_logits / temperature, test.labels))
