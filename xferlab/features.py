"""Frozen-feature cache: a frozen backbone's features, computed once and reused.

While a plan freezes the whole backbone (`linear_probe`, the first phase of `lp_ft`; scoring in
`xferlab rank`), with BatchNorm in eval mode, no dropout and no train-time augmentation, the
backbone maps each image to the same feature every epoch. Computing those features once turns
every later epoch (and every later run, sweep job or search trial on the same inputs) into
training a head on a (N, F) tensor.

An entry is keyed by what decides the features: the backbone's weights (a digest of its state
dict, so a source, a checkpoint or random init all key correctly), the images (a digest of the
exact uint8 tensor: dataset, split, subset and resize), the normalisation, the device kind and
precision, and the torch version. Entries are written atomically: a crash leaves a temporary
file, never a valid-looking entry; an unreadable entry counts as a miss and is rewritten.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from xferlab.backbones import write_tensors
from xferlab.engine import Loop

CACHE_DIR = Path("outputs/cache/features")


def deterministic(backbone: nn.Module) -> bool:
    """Whether the backbone in training mode maps an image to one feature: no active dropout
    or stochastic depth (frozen BatchNorm is put in eval mode by the freezing plan)."""
    for module in backbone.modules():
        p = getattr(module, "p", None) if isinstance(module, nn.modules.dropout._DropoutNd) \
            else getattr(module, "drop_prob", None)  # timm's DropPath
        if p:
            return False
    return True


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """A digest of named tensors: names, dtypes, shapes and bytes."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous().reshape(-1)  # 0-d tensors cannot be viewed
        h.update(f"{name}|{t.dtype}|{tuple(tensors[name].shape)}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


class FeatureCache:
    """Features of one frozen backbone, per input tensor, in memory and (unless `root` is None)
    on disk. Build it while the backbone is in the state whose features are wanted."""

    def __init__(self, backbone: nn.Module, loop: Loop, root: Path | None = CACHE_DIR):
        self.backbone, self.loop, self.root = backbone, loop, root
        self.weights = tensor_digest(backbone.state_dict())
        self.hits = self.misses = 0
        self._memory: dict[str, torch.Tensor] = {}

    def key(self, images: torch.Tensor) -> str:
        parts = {"weights": self.weights, "images": tensor_digest({"x": images}),
                 "mean": self.loop.mean, "std": self.loop.std, "device": self.loop.device.type,
                 "bf16": self.loop.bf16, "torch": torch.__version__}
        return hashlib.blake2b(json.dumps(parts, sort_keys=True).encode(),
                               digest_size=16).hexdigest()

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """The (N, F) float32 features of uint8 `images`, on the loop's device."""
        key = self.key(images)
        if key in self._memory:
            return self._memory[key]
        features = self._load(key, len(images))
        if features is None:
            self.misses += 1
            features = extract(self.backbone, images, self.loop)
            if self.root is not None:
                write_tensors({"features": features.cpu()}, self.root / f"{key}.safetensors")
        else:
            self.hits += 1
        self._memory[key] = features.to(self.loop.device)
        return self._memory[key]

    def _load(self, key: str, n: int) -> torch.Tensor | None:
        if self.root is None:
            return None
        path = self.root / f"{key}.safetensors"
        try:
            features = load_file(path)["features"]
        except FileNotFoundError:
            return None
        except (SafetensorError, KeyError, OSError):
            path.unlink(missing_ok=True)  # unreadable: recompute and rewrite it
            return None
        return features if len(features) == n else None


@torch.inference_mode()
def extract(backbone: nn.Module, images: torch.Tensor, loop: Loop) -> torch.Tensor:
    """Pooled features of uint8 images, the backbone in eval mode, in eval-sized batches."""
    was_training = backbone.training
    backbone.eval()
    out = []
    for start in range(0, len(images), loop.eval_batch_size):
        with loop.autocast():
            out.append(backbone(loop.prepare(images[start:start + loop.eval_batch_size])).float())
    backbone.train(was_training)
    return torch.cat(out)
