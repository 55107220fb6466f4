"""Plugins: options of the ablation axes defined outside xferlab.

A plugin is a module that registers its options on import, each one decorated definition
(`@STRATEGIES.register(...)`, `@HEADS.register(...)`, `@DATA_KINDS.register(...)`, …), and
whose `CONF_DIR`, if it has one, is a folder of conf/'s layout holding one YAML per option
(freeze/<name>.yaml, head/<name>.yaml, data/<name>.yaml, …). xferlab imports the modules of the
`xferlab.plugins` entry-point group and those named in XFERLAB_PLUGINS (comma-separated) before
it composes or checks a config, and puts their folders on Hydra's search path after conf/.
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points
from pathlib import Path

from hydra.core.config_search_path import ConfigSearchPath
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin

ENV = "XFERLAB_PLUGINS"
GROUP = "xferlab.plugins"
CONF_DIRS: list[Path] = []  # the plugins' config folders, in the order they were loaded
_loaded: set[str] = set()


def load() -> list[Path]:
    """Import every plugin not imported yet; the config folders of all of them."""
    names = [ep.value.partition(":")[0] for ep in entry_points(group=GROUP)]
    names += [name.strip() for name in os.environ.get(ENV, "").split(",") if name.strip()]
    for name in dict.fromkeys(names):
        if name in _loaded:
            continue
        try:
            module = importlib.import_module(name)
        except ImportError as err:
            raise ImportError(f"xferlab plugin {name!r} ({ENV} or the {GROUP!r} entry points) "
                              f"cannot be imported: {err}") from err
        _loaded.add(name)
        if (conf := getattr(module, "CONF_DIR", None)) is not None:
            CONF_DIRS.append(Path(conf).resolve())
    if CONF_DIRS:  # Hydra builds its search path on each compose and in `@hydra.main`
        Plugins.instance().register(XferlabPluginsSearchPath)  # registered once, however often
    return CONF_DIRS


class XferlabPluginsSearchPath(SearchPathPlugin):
    """The plugins' config folders on Hydra's search path (for compose and `@hydra.main`)."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        for folder in CONF_DIRS:
            search_path.append(provider="xferlab-plugin", path=f"file://{folder}")
