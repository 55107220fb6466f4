"""The one style of every figure xferlab draws, for a paper and a talk: readable type, series
that differ in marker and line style as well as colour (they read in greyscale), human labels
from one table instead of config keys, a caption line naming what was run (data, backbone,
seeds, commit), and files at 200 dpi or, for a `.pdf` or `.svg` path, as vectors.

Imports nothing of xferlab, and matplotlib only when a figure is drawn or saved: a run imports
it at its end, not its start.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

if TYPE_CHECKING:
    from matplotlib.figure import Figure

DPI = 200  # raster files: sharp on a slide and in print at column width
VECTOR = (".pdf", ".svg")
SAVE: dict[str, Any] = {"dpi": DPI, "bbox_inches": "tight", "pad_inches": 0.06}  # savefig's
# keyword arguments: `tight` keeps the caption, which sits below the axes' area

# Okabe & Ito's palette (safe for colour-blind readers), one marker and one dash per series, so
# that series differ in shape and dash where colour is lost (greyscale print, a projector)
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
DASHES: tuple[Any, ...] = ("-", "--", "-.", ":", (0, (6, 2, 1, 2, 1, 2)), (0, (8, 3)),
                           (0, (1, 1)), (0, (4, 1, 1, 1)))
CAPTION_GID = "caption"

STYLE: dict[str, Any] = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8,
    "legend.title_fontsize": 8, "xtick.labelsize": 8, "ytick.labelsize": 8,
    "axes.spines.top": False, "axes.spines.right": False, "axes.grid": True,
    "grid.alpha": 0.3, "grid.linewidth": 0.6, "lines.linewidth": 1.6, "lines.markersize": 5,
    "legend.frameon": False, "image.cmap": "Blues",
    "pdf.fonttype": 42,  # TrueType, not Type 3: what journals' checkers accept
    "svg.fonttype": "none",  # text stays text: selectable, and the file stays small
    "svg.hashsalt": "xferlab",  # the same figure gives the same SVG (clean diffs of studies)
}

# Human names: for keys (config keys, params, tags, metrics) and, per config group, for the
# options' names. A key or option not here is shown as it is.
LABELS = {
    "freeze": "freezing strategy", "data.fraction": "labelled fraction", "data": "dataset",
    "data.name": "dataset",
    "backbone": "backbone", "head": "head", "optim": "optimizer", "sched": "schedule",
    "seed": "seed", "data.subset_seed": "subset seed", "data.train_size": "training images",
    "freeze.k": "block k", "freeze.rank": "LoRA rank", "freeze.decay": "layer decay",
    "freeze.lp_epochs": "linear-probe epochs", "freeze.ft_lr_scale": "fine-tuning lr scale",
    "optim.lr": "learning rate", "optim.weight_decay": "weight decay",
    "trainer.epochs": "epochs", "data.image_size": "image size (px)",
    "head.hidden": "head width", "head.dropout": "head dropout",
    "best/val_acc": "best validation accuracy", "best/epoch": "best epoch",
    "params/trainable": "trainable parameters", "params/total": "parameters",
    "time/epoch_s": "seconds per epoch", "throughput/img_s": "images per second",
    "test/temperature": "temperature (fitted on validation)", "epoch": "epoch",
}
SPLITS = {"test": "test", "val": "validation", "train": "training"}
METRICS = {"acc": "accuracy", "balanced_acc": "balanced accuracy", "macro_f1": "macro-F1",
           "loss": "loss", "nll": "NLL", "ece": "ECE", "brier": "Brier score",
           "nll_ts": "NLL, temperature-scaled", "ece_ts": "ECE, temperature-scaled"}
VALUES = {
    "freeze": {"linear_probe": "linear probe", "lp_ft": "LP-FT", "full": "full fine-tuning",
               "scratch": "from scratch", "last_k": "last k blocks", "block_k": "one block (k)",
               "bitfit": "BitFit", "lora": "LoRA", "gradual": "gradual unfreezing",
               "layer_decay": "layer-wise lr decay"},
    "backbone": {"resnet18": "ResNet-18", "resnet_tiny": "ResNet (tiny)", "vit_tiny": "ViT-Tiny",
                 "efficientnet_lite0": "EfficientNet-Lite0",
                 "efficientnet_lite1": "EfficientNet-Lite1",
                 "efficientnet_lite2": "EfficientNet-Lite2"},
    "head": {"linear": "linear", "mlp": "MLP", "cosine": "cosine classifier"},
    "optim": {"adamw": "AdamW", "sgd": "SGD"},
    "sched": {"cosine": "cosine", "constant": "constant"},
}
_PREFIXES = ("params.", "tags.", "metrics.", "choice.")

P = ParamSpec("P")
R = TypeVar("R")


def label(key: str) -> str:
    """The human name of a key: `freeze` -> freezing strategy, `data.fraction` -> labelled
    fraction, `test/acc` -> test accuracy, `eval/<set>/ece` -> <set> ECE; else the key."""
    key = _bare(key)
    if key in LABELS:
        return LABELS[key]
    if key.removesuffix(".strategy").removesuffix(".name").removesuffix(".kind") in VALUES:
        return LABELS.get(key.split(".")[0], key)
    where, _, metric = key.rpartition("/")
    if where and metric in METRICS:
        return f"{SPLITS.get(where, where.removeprefix('eval/'))} {METRICS[metric]}"
    return key


def value_label(key: str, value: object) -> str:
    """The human name of an option in its group: (freeze, lp_ft) -> LP-FT; a value of any
    other key, or one not in the table, as it is."""
    key, text = _bare(key), str(value)
    group = key.split(".")[0]
    if key in (group, f"{group}.strategy", f"{group}.name", f"{group}.kind"):
        return VALUES.get(group, {}).get(text, text)
    return text


def series(i: int) -> dict[str, Any]:
    """Colour, marker and line style of the i-th series: no two of the first eight share any."""
    return {"color": COLORS[i % len(COLORS)], "marker": MARKERS[i % len(MARKERS)],
            "linestyle": DASHES[i % len(DASHES)]}


def styles(keys: Sequence[str],
           series_values: Sequence[tuple[object, ...]]) -> list[dict[str, Any]]:
    """The style of each series, named by its values of `keys`. Series that are options of one
    group in VALUES keep their option's style, so that full fine-tuning looks the same in every
    plot of a study; other series (or options that would share a colour here) go in order."""
    group = _bare(keys[0]).split(".")[0] if len(keys) == 1 else None
    options = list(VALUES.get(group, {})) if group else []
    fixed = [options.index(str(v[0])) if str(v[0]) in options else -1 for v in series_values]
    if -1 in fixed or len({i % len(COLORS) for i in fixed}) < len(fixed):
        fixed = list(range(len(series_values)))
    return [series(i) for i in fixed]


def styled(draw: Callable[P, R]) -> Callable[P, R]:
    """`draw` run in the shared style: text, lines and axes take it as they are made."""
    @wraps(draw)
    def in_style(*args: P.args, **kwargs: P.kwargs) -> R:
        with _in_style():
            return draw(*args, **kwargs)

    return in_style


def figure(width: float, height: float) -> Figure:
    """A figure of that size (inches) laid out by matplotlib's constrained layout; no pyplot,
    so nothing is kept open and any thread or headless server can draw it."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def caption_line(*, data: str | None, backbone: str | None, seeds: str,
                 commit: str | None, more: Sequence[str] = ()) -> str:
    """`data: animal_mnist · backbone: resnet18 · <more> · <seeds> · commit 1a2b3c4`."""
    return " · ".join([f"data: {data or 'unknown'}", f"backbone: {backbone or 'unknown'}",
                       *more, seeds, commit or "commit unknown"])


def commit_text(commits: Iterable[tuple[str | None, bool]]) -> str:
    """`commit 1a2b3c4`, `commit 1a2b3c4 (dirty)` or `commits 1a2b3c4, 5d6e7f8` from
    (commit, dirty) pairs; `commit unknown` without one."""
    found = list(dict.fromkeys((c[:7], bool(d)) for c, d in commits if isinstance(c, str) and c))
    if not found:
        return "commit unknown"
    listed = ", ".join(f"{c}{' (dirty)' if d else ''}" for c, d in found)
    return f"commit{'s' if len({c for c, _ in found}) > 1 else ''} {listed}"


def caption(fig: Figure, text: str) -> Figure:
    """Set `text` as the line under the figure (replacing an earlier caption)."""
    for old in [t for t in fig.texts if t.get_gid() == CAPTION_GID]:
        old.remove()
    fig.text(0.5, -0.01, text, ha="center", va="top", fontsize=7.5, color="0.25",
             gid=CAPTION_GID, wrap=False)
    return fig


def caption_of(fig: Figure) -> str | None:
    """The figure's caption line, None without one."""
    return next((t.get_text() for t in fig.texts if t.get_gid() == CAPTION_GID), None)


def save(fig: Figure, path: str | Path) -> Path:
    """Write the figure: vectors for .pdf and .svg, else a raster at 200 dpi (PNG without a
    suffix). The same figure gives the same file: no dates in the metadata."""
    path = Path(path)
    fmt = path.suffix.lstrip(".").lower() or "png"
    with _in_style():
        fig.savefig(path, format=fmt, metadata=_metadata(fmt), **SAVE)
    return path


def encode(fig: Figure, fmt: str = "png") -> bytes:
    """The file `save` would write, as bytes (for a page that embeds it)."""
    buffer = io.BytesIO()
    with _in_style():
        fig.savefig(buffer, format=fmt, metadata=_metadata(fmt), **SAVE)
    return buffer.getvalue()


def _in_style() -> AbstractContextManager[Any]:
    import matplotlib

    return matplotlib.rc_context(STYLE)  # type: ignore[arg-type]  # its keys: rcParams names


def _metadata(fmt: str) -> dict[str, Any]:
    if fmt == "pdf":
        return {"Creator": "xferlab", "CreationDate": None}
    if fmt == "svg":
        return {"Creator": "xferlab", "Date": None}
    return {"Software": "xferlab"} if fmt == "png" else {}


def _bare(key: str) -> str:
    """`params.data.fraction`, `tags.choice.freeze`, `choice.freeze` -> the key itself."""
    for prefix in _PREFIXES:  # in this order: tags.choice.freeze -> choice.freeze -> freeze
        key = key.removeprefix(prefix)
    return key
