"""Evaluation: what a trained model is measured on and with, in one place.

A run is measured on its test split and on the extra evaluation sets of `data.eval_sets`:
another dataset with the target's classes (a natural shift: `mnist_5k` for `data=digits`), or a
corruption of the test split, `<corruption>-<severity>` (severity 1-5; `corrupt-<severity>` is
every corruption). Metrics: accuracy, balanced accuracy and macro-F1 (`_metrics.class_metrics`),
and calibration (NLL, ECE, Brier) before and after temperature scaling fitted on validation.
A new kind of set or metric is added here alone; `run.evaluate_final` is what the train recipe
calls.

Torch-free at import, so the CLI checks `data.eval_sets` before torch loads; the metrics and the
sets load with torch on first use.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from xferlab import data
from xferlab.config import DataConfig, close_match

if TYPE_CHECKING:
    import torch

    from xferlab.evaluate._metrics import (
        Reliability,
        calibration,
        class_metrics,
        confusion,
        fit_temperature,
        reliability,
    )
    from xferlab.evaluate._plots import reliability_figure
    from xferlab.evaluate._sets import EvalSet, Final, build_sets, evaluate_final, set_metrics

__all__ = ["CORRUPTIONS", "SEVERITIES", "EvalSet", "Final", "Reliability", "build_sets",
           "calibration", "class_metrics", "confusion", "evaluate_final", "fit_temperature",
           "parse", "problems", "reliability", "reliability_figure", "set_metrics"]
_WITH_TORCH = {**dict.fromkeys(("Reliability", "calibration", "class_metrics", "confusion",
                                "fit_temperature", "reliability"), "_metrics"),
               **dict.fromkeys(("EvalSet", "Final", "build_sets", "evaluate_final",
                                "set_metrics"), "_sets"),
               "reliability_figure": "_plots"}


def __getattr__(name: str) -> Any:
    """The torch-side names, imported on first use (PEP 562)."""
    if name not in _WITH_TORCH:
        raise AttributeError(f"module 'xferlab.evaluate' has no attribute {name!r}")
    return getattr(importlib.import_module(f"xferlab.evaluate.{_WITH_TORCH[name]}"), name)


Corruption = Callable[["torch.Tensor", int, "torch.Generator"], "torch.Tensor"]
# not a config axis (`Registry`): a name inside data.eval_sets' entries
CORRUPTIONS: dict[str, Corruption] = {}
SEVERITIES = range(1, 6)
ALL_CORRUPTIONS = "corrupt"  # corrupt-<severity>: every corruption at that severity


def _corruption(name: str) -> Corruption:
    """`_corrupt.<name>`, imported with torch on first use; its docstring is the definition."""

    def corrupt(images: torch.Tensor, severity: int, generator: torch.Generator) -> torch.Tensor:
        from xferlab.evaluate import _corrupt

        return getattr(_corrupt, name)(images, severity, generator)

    return corrupt


for _name in ("gaussian_noise", "gaussian_blur", "contrast", "brightness", "rotate", "elastic",
              "pixelate", "jpeg"):  # ImageNet-C's, where they apply (Hendrycks & Dietterich 2019)
    CORRUPTIONS[_name] = _corruption(_name)


def parse(name: str) -> tuple[str, int] | None:
    """(corruption, severity) of a corruption set's name, or None for a dataset's name."""
    found = re.fullmatch(r"(\w+)-(\d+)", name)
    return (found[1], int(found[2])) if found else None


def corruptions(name: str) -> list[str]:
    """The corruption sets a name stands for: itself, or every corruption for corrupt-<s>."""
    parsed = parse(name)
    if parsed and parsed[0] == ALL_CORRUPTIONS:
        return [f"{c}-{parsed[1]}" for c in CORRUPTIONS]
    return [name] if parsed else []


def problems(d: DataConfig | Any) -> list[str]:
    """One line per bad `data.eval_sets` entry: an unknown name, a severity out of range, a
    dataset whose class names differ from the target's (where both are known before loading)."""
    found = []
    datasets = data.DATA_KINDS.names()
    target = _classes(d.kind, d) if d.kind in data.DATA_KINDS else None
    for name in d.eval_sets:
        parsed = parse(str(name))
        if parsed is not None:
            corruption, severity = parsed
            if corruption != ALL_CORRUPTIONS and corruption not in CORRUPTIONS:
                known = (*CORRUPTIONS, ALL_CORRUPTIONS)
                found.append(f"data.eval_sets: {name!r} names no corruption"
                             f"{close_match(corruption, known)}: use <corruption>-<1..5> with "
                             f"one of {', '.join(known)}")
            elif severity not in SEVERITIES:
                found.append(f"data.eval_sets: {name!r} has severity {severity}: use a "
                             f"severity from 1 to 5, e.g. {corruption}-3")
        elif name not in datasets:
            found.append(f"data.eval_sets: {name!r} is neither a dataset ({', '.join(datasets)})"
                         f" nor a corruption <corruption>-<1..5>{close_match(name, datasets)}")
        elif target and (theirs := _classes(name, None)) and theirs != target:
            found.append(class_mismatch(name, theirs, d.name, target))
    return found


def class_mismatch(name: str, theirs: list[str], target_name: str, target: list[str]) -> str:
    """The line for an evaluation set whose classes are not the target's."""

    def shown(classes: list[str]) -> str:
        return f"{len(classes)} classes ({', '.join(classes[:4])}{', …' * (len(classes) > 4)})"

    return (f"data.eval_sets: {name!r} has {shown(theirs)} but data={target_name} has "
            f"{shown(target)}: name a dataset with the target's classes, in the same order")


def _classes(kind: str, section: Any) -> list[str] | None:
    """A data kind's class names if known without loading (from its config, else defaults)."""
    return data.DATA_KINDS.build(kind, asdict(DataConfig()) if section is None
                                 else section).classes()
