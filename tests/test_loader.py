"""Images read on demand (issue 8): `data.loader` / `data.workers`, DataLoader workers.

Real PNG folders in tmp_path, real MLflow stores; workers are real processes.
"""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from tests.conftest import FAST, store_uri
from tests.test_data import load, write_mnist
from xferlab import backbones, engine, features, tracking
from xferlab.data import DataError, LazyImages, _stream
from xferlab.data._folders import lazy_split, to_split
from xferlab.launch.compose import compose_with_choices
from xferlab.recipes import train


def write_folder(root: Path, classes=("cat", "dog", "owl"), per_class: int = 20) -> Path:
    """Class-coloured noise, so a few epochs learn something."""
    rng = np.random.default_rng(0)
    for label, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 128, size=(20, 18, 3), dtype=np.uint8)
            pixels[..., label] += 120
            Image.fromarray(pixels).save(root / name / f"{i}.png")
    return root


def _loop(workers: int) -> engine.Loop:
    return engine.Loop(mean=(0.5,) * 3, std=(0.25,) * 3, device=torch.device("cpu"),
                       eval_batch_size=7, progress=False, workers=workers)


def _run(project: Path, *extra: str) -> str:
    overrides = [*FAST, "data=image_folder", f"data.root={project / 'pets'}",
                 "data.image_size=16", "trainer.epochs=2", "trainer.batch_size=8", *extra]
    cfg, choices = compose_with_choices(overrides)
    return train.train(cfg, tracking.Launch(choices=choices, overrides=overrides)).run_id


def test_streamed_training_logs_the_metrics_of_the_in_memory_path(project):
    write_folder(project / "pets")
    client = MlflowClient(store_uri(project))
    streamed = client.get_run(_run(project, "data.loader=workers", "data.workers=2"))
    memory = client.get_run(_run(project, "data.loader=memory"))
    assert streamed.data.params["data.loader"] == "workers"
    for key in ("train/loss", "val/loss", "val/acc", "test/acc", "test/loss", "best/epoch"):
        assert streamed.data.metrics[key] == memory.data.metrics[key], key
    for key in ("train/loss", "val/loss", "val/acc"):
        history = [(m.step, m.value) for m in client.get_metric_history(streamed.info.run_id, key)]
        assert history == [(m.step, m.value)
                           for m in client.get_metric_history(memory.info.run_id, key)]


def test_nothing_is_decoded_at_load_and_a_bad_file_fails_when_read(tmp_path):
    root = write_folder(tmp_path / "pets", per_class=6)
    corrupt = root / "dog" / "bad.png"
    corrupt.write_bytes(b"not a png")
    with pytest.raises(DataError, match="cannot read image"):  # decoded up front: fails now
        load("image_folder", tmp_path, root=str(root), in_chans=3, image_size=16,
             loader="memory")
    ds = load("image_folder", tmp_path, root=str(root), in_chans=3, image_size=16,
              loader="workers")
    assert ds.streamed and isinstance(ds.val.images, LazyImages)
    every = LazyImages.of(ds.train.images.reader, "every file")
    paths = list(every.reader.paths)
    gone = root / "cat" / "2.png"
    gone.unlink()  # after loading
    loop = _loop(workers=2)
    for path in (gone, corrupt):  # raised in a worker, re-raised here as it was
        with pytest.raises(DataError) as error:
            list(loop.batches(every, [torch.tensor([0, 1]), torch.tensor([paths.index(path)])]))
        assert str(error.value).startswith(f"cannot read image {str(path)!r} (")
        assert str(error.value).endswith("replace or delete the file")
        assert "\n" not in str(error.value)
    [batch] = loop.batches(every, [torch.tensor([0, 1])])  # the workers go on after an error
    assert batch.shape == (2, 3, 16, 16)


class PidReader:
    """Item i is the reading process's id as a (1, 2, 2) uint8 array."""

    in_chans, image_size = 1, 2

    def __len__(self) -> int:
        return 64

    def __getitem__(self, i: int) -> np.ndarray:
        return np.frombuffer(os.getpid().to_bytes(4, "little"), np.uint8).reshape(1, 2, 2)


def _pids(batches) -> set[int]:
    return {int.from_bytes(image.numpy().tobytes(), "little") for batch in batches
            for image in batch}


def test_workers_start_once_and_persist_across_epochs_and_splits_of_one_reader():
    images = LazyImages.of(PidReader(), "pids")
    train, val = images.take(range(48)), images.take(range(48, 64))
    loop = _loop(workers=2)
    before = {p.pid for p in multiprocessing.active_children()}
    loop.start(train, val)  # forked now, before any batch (train does so before other threads)
    started = {p.pid for p in multiprocessing.active_children()} - before
    pids = set()
    for _ in range(3):  # epochs
        pids |= _pids(loop.batches(train, [torch.randperm(48)[:8] for _ in range(6)]))
        pids |= _pids(loop.batches(val, loop.eval_slices(16)))
    assert pids == started and len(started) == 2  # one pool for both splits of the reader


def test_streamed_batches_equal_the_in_memory_ones(tmp_path):
    root = write_folder(tmp_path / "pets", per_class=6)
    memory = load("image_folder", tmp_path, root=str(root), in_chans=3, image_size=16,
                  loader="memory")
    streamed = load("image_folder", tmp_path, root=str(root), in_chans=3, image_size=16,
                    loader="workers")
    assert streamed.identity == memory.identity  # the same data, however it is read
    loop = _loop(workers=1)
    for split in ("train", "val", "test"):
        a, b = getattr(memory, split), getattr(streamed, split)
        assert torch.equal(a.labels, b.labels) and b.images.shape == a.images.shape
        batches = [torch.randperm(len(a))[:5] for _ in range(3)] + loop.eval_slices(len(a))
        got = list(loop.batches(b.images, batches))
        assert len(got) == len(batches)
        assert all(torch.equal(x, a.images[idx]) and x.is_contiguous()  # NCHW, as in memory
                   for x, idx in zip(got, batches, strict=True))


def test_auto_streams_only_above_the_size_threshold(tmp_path, monkeypatch):
    root = str(write_folder(tmp_path / "pets", per_class=4))
    assert not load("image_folder", tmp_path, root=root, loader="auto").streamed
    monkeypatch.setattr(_stream, "STREAM_ABOVE_BYTES", 12 * 32 * 32 - 1)  # 12 images, 1x32x32
    assert load("image_folder", tmp_path, root=root, loader="auto").streamed
    monkeypatch.setattr(_stream, "STREAM_ABOVE_BYTES", 12 * 32 * 32)
    assert not load("image_folder", tmp_path, root=root, loader="auto").streamed


def test_sets_that_are_arrays_stay_in_memory_and_other_torchvision_sets_stream(tmp_path):
    assert not load("digits", tmp_path, loader="workers").streamed
    write_mnist(tmp_path / "data", "MNIST", {"train": 30, "t10k": 10})
    ds = load("torchvision", tmp_path, name="MNIST", root=str(tmp_path / "data"),
              loader="workers")
    assert not ds.streamed and isinstance(ds.train.images, torch.Tensor)
    from torchvision.datasets import FakeData

    fake = FakeData(size=9, image_size=(3, 20, 24), num_classes=4)
    memory, lazy = to_split(fake, 1, 16), lazy_split(fake, "FakeData", "train", 1, 16)
    assert torch.equal(lazy.labels, memory.labels) and lazy.images.shape == (9, 1, 16, 16)
    [batch] = _loop(workers=0).batches(lazy.images, [slice(0, 9)])
    assert torch.equal(batch, memory.images)


def test_bad_loader_values_are_data_errors(tmp_path):
    with pytest.raises(DataError, match=r"data\.loader='disk' is not one of auto, memory, "):
        load("digits", tmp_path, loader="disk")


def test_the_feature_cache_hits_on_a_streamed_folder_and_sees_changed_files(project):
    root = write_folder(project / "pets", per_class=8)
    client = MlflowClient(store_uri(project))
    runs = [client.get_run(_run(project, "freeze=linear_probe", "data.loader=workers",
                                "data.workers=1")) for _ in range(2)]
    assert runs[0].data.tags["feature_cache"] == "0 hits, 3 misses"
    assert runs[1].data.tags["feature_cache"] == "3 hits, 0 misses"
    assert runs[1].data.metrics["test/acc"] == runs[0].data.metrics["test/acc"]

    torch.manual_seed(0)
    backbone, _ = backbones.create_backbone("test_resnet", pretrained="none", in_chans=3,
                                            image_size=16)
    cache = features.FeatureCache(backbone, _loop(workers=0), root=project / "cache")

    def key() -> str:
        ds = load("image_folder", project, root=str(root), in_chans=3, image_size=16,
                  loader="workers")
        return cache.key(ds.train.images)

    before = key()
    assert key() == before
    image = root / "cat" / "0.png"
    stat = image.stat()
    os.utime(image, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # rewritten, same size
    touched = key()
    Image.new("RGB", (20, 18)).save(image)  # other pixels, other size
    assert len({before, touched, key()}) == 3
