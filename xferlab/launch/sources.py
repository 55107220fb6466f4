"""Backbones pretrained by xferlab itself: `backbone.pretrained=source:<set>`.

A source is the composed config of `experiment=source_<set>` for the transfer run's backbone and
input shape. Its weights are cached under outputs/sources/, keyed by a digest of that config, so a
changed source config means a new build and an unchanged one is never built twice.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig

from xferlab import config, freezing
from xferlab.config import ConfigError
from xferlab.launch.compose import compose_with_choices

SOURCES_DIR = Path("outputs/sources")


@dataclass(frozen=True)
class Source:
    path: Path  # backbone weights, safetensors, head dropped
    run_id: str  # the MLflow run that trained them (experiment xferlab-sources)
    digest: str  # of the weights file


def needs_source(cfg: DictConfig) -> bool:
    """A `source:` backbone, and a strategy that starts from pretrained weights."""
    return (cfg.backbone.pretrained.startswith("source:")
            and freezing.STRATEGIES[cfg.freeze.strategy].pretrained)


def source_overrides(cfg: DictConfig) -> list[str]:
    """Overrides that compose the source config for this transfer run's backbone and inputs."""
    name = cfg.backbone.pretrained.split(":", 1)[1]
    return [f"experiment=source_{name}", f"backbone.name={cfg.backbone.name}",
            f"data.in_chans={cfg.data.in_chans}", f"data.image_size={cfg.data.image_size}",
            *cfg.backbone.source_overrides]


def source_config(cfg: DictConfig) -> tuple[DictConfig, dict[str, str], list[str]]:
    overrides = source_overrides(cfg)
    src_cfg, choices = _composed(tuple(overrides))
    return copy.deepcopy(src_cfg), dict(choices), overrides


@functools.lru_cache(maxsize=64)
def _composed(overrides: tuple[str, ...]) -> tuple[DictConfig, dict[str, str]]:
    """Composed once per process: the launcher's check, the build and each run's lookup all ask
    (a Hydra composition costs about 0.2 s)."""
    return compose_with_choices(list(overrides))


def cache_file(src_cfg: DictConfig) -> Path:
    """outputs/sources/<backbone>-<set>-<digest of the source config>.safetensors"""
    key = config.digest(src_cfg)
    return SOURCES_DIR / f"{src_cfg.backbone.name}-{src_cfg.data.name}-{key}.safetensors"


def cached(path: Path) -> Source | None:
    meta = path.with_suffix(".json")
    if not (path.is_file() and meta.is_file()):
        return None
    info = json.loads(meta.read_text())
    return Source(path, info["run_id"], info["weights_digest"])


def lookup(cfg: DictConfig) -> Source | None:
    """The cached source this transfer run starts from; None when it needs none."""
    if not needs_source(cfg):
        return None
    src_cfg, _, overrides = source_config(cfg)
    found = cached(cache_file(src_cfg))
    if found is None:
        raise ConfigError([(f"backbone.pretrained={cfg.backbone.pretrained!r} is not built for "
                            f"{cfg.backbone.name}: run `xferlab pretrain {' '.join(overrides)}` "
                            "(xferlab train builds it by itself)")])
    return found
