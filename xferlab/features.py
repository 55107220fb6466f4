"""Frozen-feature cache: a frozen backbone's features, computed once and reused.

While a plan freezes the whole backbone (`linear_probe`, the first phase of `lp_ft`; scoring in
`xferlab rank`), with BatchNorm in eval mode, no dropout and no train-time augmentation, the
backbone maps each image to the same feature every epoch. Computing those features once turns
every later epoch (and every later run, sweep job or search trial on the same inputs) into
training a head on a (N, F) tensor.

An entry is keyed by what decides the features: the backbone's weights (a digest of its state
dict, so a source, a checkpoint or random init all key correctly), the images (a digest of the
exact uint8 tensor: dataset, split, subset and resize; for images read on demand, the digest of
their files or items, indices and format), the normalisation, the device kind and precision, and
the torch version. Entries are written atomically: a crash leaves a temporary
file, never a valid-looking entry; an unreadable entry counts as a miss and is rewritten.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from xferlab.backbones import write_tensors
from xferlab.engine import Loop

CACHE_DIR = Path("outputs/cache/features")


# timm's names for a probability of dropping something in training: DropPath's drop_prob,
# PatchDropout's prob, the pre-logits dropout's drop_rate (applied even with num_classes=0)
_STOCHASTIC = ("drop_prob", "prob", "drop_rate")


def deterministic(backbone: nn.Module) -> bool:
    """Whether the backbone in training mode maps an image to one feature: no active dropout,
    stochastic depth or patch dropout, and no BatchNorm that would update its statistics
    (the freezing plan puts frozen BatchNorm in eval mode; one without parameters stays)."""
    for module in backbone.modules():
        if isinstance(module, nn.modules.dropout._DropoutNd) and module.p:
            return False
        if any(isinstance(getattr(module, a, None), float) and getattr(module, a) > 0
               for a in _STOCHASTIC):
            return False
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and not module.affine:
            return False
    return True


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """A digest of named tensors: names, dtypes, shapes and bytes."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous().reshape(-1)  # 0-d tensors cannot be viewed
        h.update(f"{name}|{t.dtype}|{tuple(tensors[name].shape)}".encode())
        # no copy: an ndarray is a buffer (numpy's stubs do not say so)
        h.update(t.view(torch.uint8).numpy() if t.numel() else b"")  # type: ignore[arg-type]
    return h.hexdigest()


class FeatureCache:
    """Features of one frozen backbone, per input tensor, in memory and (unless `root` is None)
    on disk under `root`. Build it while the backbone is in the state whose features are wanted."""

    def __init__(self, backbone: nn.Module, loop: Loop, root: Path = CACHE_DIR):
        self.backbone, self.loop, self.root = backbone, loop, root
        # the weights, and what runs them: two architectures can share a state dict's names
        # and shapes (timm's efficientnet_b0 and tf_efficientnet_b0 differ in padding)
        self.weights = tensor_digest(backbone.state_dict())
        self.architecture = (type(backbone).__name__,
                             getattr(backbone, "pretrained_cfg", {}).get("architecture"))
        self.hits = self.misses = 0
        self._memory: dict[str, torch.Tensor] = {}

    def key(self, images: Any) -> str:
        content = (tensor_digest({"x": images}) if isinstance(images, torch.Tensor)
                   else images.digest)  # LazyImages: not decoded to be keyed
        parts = {"weights": self.weights, "architecture": self.architecture,
                 "images": content, "mean": self.loop.mean,
                 "std": self.loop.std, "device": self.loop.device.type, "bf16": self.loop.bf16,
                 "channels_last": self.loop.channels_last, "torch": torch.__version__,
                 "timm": timm.__version__}
        return hashlib.blake2b(json.dumps(parts, sort_keys=True).encode(),
                               digest_size=16).hexdigest()

    def __call__(self, images: Any) -> torch.Tensor:
        """The (N, F) float32 features of uint8 `images` (a tensor, or `data.LazyImages`), on
        the loop's device."""
        key = self.key(images)
        if key in self._memory:
            return self._memory[key]
        features = self._load(key, len(images))
        if features is None:
            self.misses += 1
            if self.loop.say is not None:
                self.loop.say(f"computing the backbone's features of {len(images)} images for "
                              "the feature cache")
            features = extract(self.backbone, images, self.loop)
            write_tensors({"features": features.cpu()}, self.root / f"{key}.safetensors")
        else:
            self.hits += 1
        self._memory[key] = features.to(self.loop.device)
        return self._memory[key]

    def _load(self, key: str, n: int) -> torch.Tensor | None:
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
def extract(backbone: nn.Module, images: Any, loop: Loop) -> torch.Tensor:
    """Pooled features of uint8 images (in memory or read on demand), the backbone in eval mode,
    in eval-sized batches."""
    was_training = backbone.training
    backbone.eval()
    out = []
    for batch in loop.batches(images, loop.eval_slices(len(images))):
        with loop.autocast():
            out.append(backbone(loop.prepare(batch)).float())
    backbone.train(was_training)
    return torch.cat(out)
