"""xferlab.data: splits, nested subsets, the glyph source task, user folders, torchvision, augment.

Everything runs offline on data the tests write themselves (or that ships with scikit-learn).
"""

from __future__ import annotations

import collections
import itertools
import math
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xferlab.data import (
    DataError,
    Datasets,
    augment,
    indices_digest,
    load_dataset,
    subset_indices,
)
from xferlab.data._folders import to_split
from xferlab.data._glyphs import render

CHARSET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def load(kind: str, tmp_path: Path, **overrides) -> Datasets:
    """load_dataset with the config defaults, a small glyph pool and a cache under tmp_path."""
    settings = {"name": kind, "image_size": 32, "in_chans": 1, "seed": 0, "val_fraction": 0.15,
                "test_fraction": 0.2, "size": 620, "charset": CHARSET, "root": None,
                "val_root": None, "test_root": None, "download": False,
                "cache_dir": tmp_path / "cache"}
    return load_dataset(kind, **{**settings, **overrides})


def counts(labels) -> np.ndarray:
    return np.bincount(np.asarray(labels))


# --- subsets -----------------------------------------------------------------------------------

# an imbalanced pool: classes of 3, 50 and 200 images, shuffled
LABELS = np.random.default_rng(0).permutation(np.repeat([0, 1, 2], [3, 50, 200]))


def test_fraction_subsets_are_stratified_nested_and_keep_one_per_class():
    subsets = [set(subset_indices(LABELS, fraction=f, shots=None, subset_seed=0))
               for f in (0.01, 0.1, 0.5, 1.0)]
    for small, large in itertools.pairwise(subsets):
        assert small < large
    assert subsets[-1] == set(range(len(LABELS)))
    for fraction, subset in zip((0.01, 0.1, 0.5), subsets, strict=False):
        expected = [max(1, math.ceil(fraction * n)) for n in (3, 50, 200)]
        assert counts(LABELS[sorted(subset)]).tolist() == expected


def test_shot_subsets_take_k_per_class_and_are_nested():
    one, three = (subset_indices(LABELS, fraction=1.0, shots=k, subset_seed=3) for k in (1, 3))
    assert counts(LABELS[one]).tolist() == [1, 1, 1]
    assert counts(LABELS[three]).tolist() == [3, 3, 3]
    assert set(one) < set(three)
    assert np.all(np.diff(three) > 0)  # sorted


def test_subset_seed_decides_the_subset():
    def pick(seed: int) -> np.ndarray:
        return subset_indices(LABELS, fraction=0.1, shots=None, subset_seed=seed)

    assert np.array_equal(pick(0), pick(0))
    assert not np.array_equal(pick(0), pick(1))
    assert indices_digest(pick(0)) == indices_digest(pick(0)) != indices_digest(pick(1))
    assert len(indices_digest(pick(0))) == 16


def test_fraction_and_shots_together_is_an_error():
    with pytest.raises(DataError, match=r"data\.fraction=0\.1 and data\.shots=5"):
        subset_indices(LABELS, fraction=0.1, shots=5, subset_seed=0)


def test_more_shots_than_the_smallest_class_is_an_error():
    with pytest.raises(DataError, match=r"data\.shots=4 .* has 3 training images"):
        subset_indices(LABELS, fraction=1.0, shots=4, subset_seed=0)


# --- glyphs ------------------------------------------------------------------------------------

def test_glyphs_are_deterministic_whatever_the_worker_count():
    # 1,200 images span three seeded chunks, so two workers really split the work
    one = render(seed=5, size=1200, image_size=32, charset=CHARSET, workers=1)
    two = render(seed=5, size=1200, image_size=32, charset=CHARSET, workers=2)
    assert one.shape == (1200, 32, 32) and one.dtype == np.uint8
    assert np.array_equal(one, two)
    assert not np.array_equal(one, render(seed=6, size=1200, image_size=32, charset=CHARSET,
                                          workers=1))


def test_glyphs_give_balanced_splits_of_all_62_classes(tmp_path):
    ds = load("glyphs", tmp_path, in_chans=3)
    assert ds.classes == list(CHARSET) and ds.num_classes == 62
    assert ds.train.images.shape[1:] == (3, 32, 32) and ds.train.images.dtype == torch.uint8
    for split in (ds.train, ds.val, ds.test):
        assert len(set(counts(split.labels).tolist())) == 1  # 10 per class: balanced cuts
    assert counts(ds.train.labels).size == 62
    assert load("glyphs", tmp_path, seed=1).identity != ds.identity


def test_glyph_cache_hit_reads_the_stored_pool(tmp_path):
    first = load("glyphs", tmp_path)
    [entry] = (tmp_path / "cache").glob("glyphs-*.npz")
    stamp = entry.stat().st_mtime_ns
    second = load("glyphs", tmp_path)
    assert torch.equal(first.train.images, second.train.images)
    assert entry.stat().st_mtime_ns == stamp  # not written again
    # a marked entry comes back as stored: the second load read it instead of rendering
    with np.load(entry) as cached:
        marked = cached["images"].copy()
    marked[:] = 7
    np.savez(entry, images=marked)
    assert torch.all(load("glyphs", tmp_path).train.images == 7)
    assert not list((tmp_path / "cache").glob("*.tmp"))


# --- digits ------------------------------------------------------------------------------------

def test_digits_splits_partition_the_set_stratified_and_fixed_for_a_seed(tmp_path):
    ds = load("digits", tmp_path)
    full = load("digits", tmp_path, val_fraction=0.5, test_fraction=0.5)
    every = torch.cat([full.train.images, full.val.images, full.test.images])
    splits = torch.cat([ds.train.images, ds.val.images, ds.test.images])
    # the three splits together are the whole set, each image exactly once
    assert collections.Counter(map(bytes, splits.numpy())) == collections.Counter(
        map(bytes, every.numpy()))
    assert len(splits) == 1797 and ds.train.images.shape[1:] == (1, 32, 32)
    share = counts(ds.test.labels) / (counts(ds.train.labels) + counts(ds.val.labels)
                                      + counts(ds.test.labels))
    assert np.all(np.abs(share - 0.2) < 0.01)
    assert torch.equal(load("digits", tmp_path).test.labels, ds.test.labels)
    assert torch.equal(load("digits", tmp_path, val_fraction=0.3).test.images, ds.test.images)
    assert not torch.equal(load("digits", tmp_path, seed=1).test.images, ds.test.images)


# --- image folders -----------------------------------------------------------------------------

def write_tree(root: Path, classes=("cat", "dog", "owl"), per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, size=(20 + i, 24, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def test_image_folder_loads_classes_and_stratified_splits(tmp_path):
    ds = load("image_folder", tmp_path, root=str(write_tree(tmp_path / "pets")), in_chans=3,
              image_size=16)
    assert ds.classes == ["cat", "dog", "owl"]
    assert ds.train.images.shape[1:] == (3, 16, 16)
    assert len(ds.train) + len(ds.val) + len(ds.test) == 18
    for split in (ds.train, ds.val, ds.test):
        assert counts(split.labels).tolist() == [len(split) // 3] * 3


def test_image_folder_takes_separate_val_and_test_roots(tmp_path):
    ds = load("image_folder", tmp_path, root=str(write_tree(tmp_path / "train")),
              val_root=str(write_tree(tmp_path / "val", per_class=2)),
              test_root=str(write_tree(tmp_path / "test", per_class=3)))
    assert (len(ds.train), len(ds.val), len(ds.test)) == (18, 6, 9)
    assert ds.train.images.shape[1:] == (1, 32, 32)


def bad_folder(tmp_path: Path, problem: str) -> tuple[dict, str]:
    """Settings with one problem, and a pattern the error message must contain."""
    root = tmp_path / "pets"
    if problem == "missing":
        return {"root": str(root)}, rf"data\.root='{root}' does not exist"
    write_tree(root)
    if problem == "empty class":
        (root / "eel").mkdir()
        return {"root": str(root)}, "'eel' holds no images"
    if problem == "corrupt image":
        (root / "dog" / "9.png").write_bytes(b"not a png")
        return {"root": str(root)}, r"cannot read image '.*9\.png'"
    if problem == "no classes":
        return {"root": str(root / "cat")}, "has no class folders"
    write_tree(tmp_path / "val", classes=("cat", "dgo"))
    return ({"root": str(root), "val_root": str(tmp_path / "val")},
            r"data\.val_root=.* \(missing \['dog', 'owl'\], extra \['dgo'\]\)")


@pytest.mark.parametrize("problem", ["missing", "empty class", "corrupt image", "no classes",
                                     "class sets differ"])
def test_bad_image_folders_raise_one_line_errors(tmp_path, problem):
    settings, pattern = bad_folder(tmp_path, problem)
    with pytest.raises(DataError, match=pattern) as error:
        load("image_folder", tmp_path, **settings)
    assert "\n" not in str(error.value)


# --- torchvision -------------------------------------------------------------------------------

def write_mnist(root: Path, name: str, sizes: dict[str, int]) -> dict[str, np.ndarray]:
    """MNIST's on-disk format (idx files, big-endian header) with random images."""
    raw, labels = root / name / "raw", {}
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, n in sizes.items():
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels[prefix] = np.arange(n, dtype=np.uint8) % 10
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 0x803, n, 28, 28) + images.tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
            struct.pack(">II", 0x801, n) + labels[prefix].tobytes())
    return labels


def test_torchvision_dataset_loads_from_local_files(tmp_path):
    labels = write_mnist(tmp_path / "data", "FashionMNIST", {"train": 60, "t10k": 20})
    ds = load("torchvision", tmp_path, name="FashionMNIST", root=str(tmp_path / "data"),
              in_chans=3, image_size=32)
    assert ds.num_classes == 10 and ds.classes[0] == "T-shirt/top"
    assert ds.test.labels.tolist() == labels["t10k"].tolist()  # the set's own test split
    assert len(ds.train) + len(ds.val) == 60
    assert ds.val.images.shape[1:] == (3, 32, 32) and ds.val.images.dtype == torch.uint8


@pytest.mark.parametrize("name, pattern", [
    ("CIFAR11", r"data\.name='CIFAR11' is not a torchvision dataset \(did you mean 'CIFAR10'"),
    ("MNIST", r"data\.name='MNIST' was not found .* data\.root='.*empty'.*data\.download=true"),
])
def test_torchvision_errors_name_the_value(tmp_path, name, pattern):
    with pytest.raises(DataError, match=pattern):
        load("torchvision", tmp_path, name=name, root=str(tmp_path / "empty"))


def test_datasets_without_an_image_array_convert_image_by_image():
    from torchvision.datasets import FakeData

    split = to_split(FakeData(size=5, image_size=(3, 20, 24), num_classes=4), in_chans=1,
                     image_size=16)
    assert split.images.shape == (5, 1, 16, 16) and split.images.dtype == torch.uint8
    assert split.labels.dtype == torch.int64 and int(split.labels.max()) < 4


@pytest.mark.parametrize("charset, pattern", [
    ("aab", r"data\.charset='aab' needs two or more distinct"),
    ("ab\u00e9", r"data\.charset contains '\u00e9', which Pillow's default font cannot draw"),
])
def test_glyph_charsets_the_font_cannot_draw_are_errors(tmp_path, charset, pattern):
    with pytest.raises(DataError, match=pattern):
        load("glyphs", tmp_path, charset=charset)


def test_unknown_kind_is_an_error(tmp_path):
    with pytest.raises(DataError, match=r"data\.kind='digit' .*did you mean 'digits'"):
        load("digit", tmp_path)


# --- augment -----------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["light", "randaugment"])
def test_augment_is_random_per_image_and_seeded(tmp_path, mode):
    images = digit_batch(tmp_path)
    first = augment(images, mode, torch.Generator().manual_seed(0))
    again = augment(images, mode, torch.Generator().manual_seed(0))
    other = augment(images, mode, torch.Generator().manual_seed(1))
    assert first.shape == images.shape and first.dtype == torch.uint8
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert not torch.equal(first, images)


def test_augment_none_returns_the_input_and_unknown_modes_fail(tmp_path):
    images = digit_batch(tmp_path)
    assert augment(images, "none", torch.Generator()) is images
    with pytest.raises(DataError, match=r"data\.augment='ligth'.*did you mean 'light'"):
        augment(images, "ligth", torch.Generator())


def digit_batch(tmp_path: Path) -> torch.Tensor:
    """16 digits at 32x32, 3 channels: a realistic uint8 batch."""
    return load("digits", tmp_path, in_chans=3).train.images[:16]
