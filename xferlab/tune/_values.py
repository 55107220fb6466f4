"""A trial's values: sampled define-by-run from a search's params, written as Hydra overrides;
and the corners and grid of a search space."""

from __future__ import annotations

import json
import math
from typing import Any

import optuna

from xferlab.tune._space import Param


def suggest(trial: optuna.Trial, params: dict[str, Param]) -> dict[str, Any]:
    """The trial's value of each param whose `when` holds, in file order (define-by-run)."""
    values: dict[str, Any] = {}
    for key, p in params.items():
        if all(k in values and values[k] == v for k, v in p.when.items()):
            values[key] = _suggest(trial, key, p)
    return values


def _choices(p: Param) -> list[Any]:
    assert p.choices is not None  # a categorical has choices (_check_param)
    return p.choices


def _range(p: Param) -> tuple[float, float]:
    assert p.low is not None and p.high is not None  # an int or float has both (_check_param)
    return p.low, p.high


def _suggest(trial: optuna.Trial, key: str, p: Param) -> Any:
    if p.type == "categorical":
        return trial.suggest_categorical(key, _choices(p))
    low, high = _range(p)
    if p.type == "int":
        return trial.suggest_int(key, int(low), int(high), step=int(p.step or 1), log=p.log)
    return trial.suggest_float(key, low, high, step=p.step, log=p.log)


def as_overrides(values: dict[str, Any]) -> list[str]:
    """Hydra overrides giving each config key (or group) its value, floats in full precision."""
    return [f"{key}={_hydra_value(value)}" for key, value in values.items()]


def _hydra_value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return json.dumps(value)  # true, false, null
    return repr(value) if isinstance(value, float) else str(value)


def corners(params: dict[str, Param]) -> list[list[str]]:
    """Override lists that set each param to both ends of its range and to each of its choices,
    under its `when`: composing them all checks the whole space before any trial runs."""
    out = []
    for key, p in params.items():
        ends = _choices(p) if p.type == "categorical" else list(_range(p))
        ends = [int(v) for v in ends] if p.type == "int" else ends
        out += [as_overrides({**p.when, key: value}) for value in ends]
    return out


def grid(params: dict[str, Param]) -> dict[str, list[Any]]:
    """Every value of each param, for the grid sampler (floats need a step)."""
    values = {}
    for key, p in params.items():
        if p.type == "categorical":
            values[key] = list(_choices(p))
        elif p.type == "int":
            low, high = _range(p)
            values[key] = list(range(int(low), int(high) + 1, int(p.step or 1)))
        else:
            (low, high), step = _range(p), p.step
            assert step is not None  # a grid's floats have a step (_check_search)
            count = math.floor((high - low) / step + 1e-9) + 1
            values[key] = [round(low + i * step, 12) for i in range(count)]
    return values
