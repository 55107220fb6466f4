"""Evaluation (issue 19): calibration metrics against hand-computed cases, temperature scaling,
the evaluation sets of `data.eval_sets`, and a real run that logs them all."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf

from tests.conftest import FAST, store_uri
from xferlab import data, evaluate, tracking
from xferlab.config import DataConfig
from xferlab.evaluate import CORRUPTIONS, build_sets, calibration, fit_temperature, reliability
from xferlab.launch.compose import compose_with_choices
from xferlab.recipes import train


def test_ece_nll_and_brier_of_a_hand_computed_case():
    # two samples at confidence 0.9 (bin 13 of 15: one right, one wrong) and one at 0.6 (right)
    probs = torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6]])
    labels = torch.tensor([0, 1, 1])
    got = calibration(probs.log(), labels)
    assert got["ece"] == pytest.approx((2 * abs(0.5 - 0.9) + abs(1 - 0.6)) / 3)
    assert got["nll"] == pytest.approx(-(math.log(0.9) + math.log(0.1) + math.log(0.6)) / 3)
    assert got["brier"] == pytest.approx((0.02 + 1.62 + 0.32) / 3)
    diagram = reliability(probs.log(), labels)
    assert diagram.count.sum() == 3 and diagram.count[13] == 2 and diagram.count[9] == 1
    assert diagram.accuracy[13] == pytest.approx(0.5)


def test_temperature_scaling_cools_an_over_confident_model():
    # labels drawn from softmax(z): z is calibrated, so 3z is over-confident by T = 3
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4000, 5, generator=g)
    labels = torch.multinomial(z.softmax(1), 1, generator=g).squeeze(1)
    over = 3 * z
    temperature = fit_temperature(over, labels)
    assert 2.7 < temperature < 3.3
    before, after = calibration(over, labels), calibration(over / temperature, labels)
    assert after["nll"] < before["nll"] - 0.1
    assert after["ece"] < before["ece"] / 2
    assert torch.equal((over / temperature).argmax(1), over.argmax(1))  # predictions unchanged
    assert fit_temperature(z, labels) == pytest.approx(1.0, abs=0.1)  # calibrated: T near 1


def test_corrupt_sets_expand_to_every_corruption_and_repeat_for_a_seed(tmp_path):
    test = data.Split(torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8),
                      torch.arange(6) % 2)
    make = dict(test=test, classes=["a", "b"], image_size=32, in_chans=3, cache_dir=tmp_path)
    sets = build_sets(["corrupt-2", "jpeg-2"], seed=0, **make)  # jpeg-2 is in corrupt-2 already
    assert [s.name for s in sets] == [f"{c}-2" for c in CORRUPTIONS]
    again, other = build_sets(["corrupt-2"], seed=0, **make), build_sets(["corrupt-2"], seed=1,
                                                                         **make)
    noise = [s.name for s in sets].index("gaussian_noise-2")
    assert all(torch.equal(a.images, b.images) for a, b in zip(sets, again, strict=True))
    assert not torch.equal(sets[noise].images, other[noise].images)
    assert all(torch.equal(s.labels, test.labels) for s in sets)

    metrics = evaluate.set_metrics(lambda images: images.float().mean((2, 3))[:, :2], sets)
    mean = sum(metrics[f"eval/{c}-2/acc"] for c in CORRUPTIONS) / len(CORRUPTIONS)
    assert metrics["eval/corrupt-2/acc"] == pytest.approx(mean)


def test_a_dataset_set_is_the_whole_dataset_in_the_target_format(tmp_path):
    test = data.Split(torch.zeros(2, 1, 16, 16, dtype=torch.uint8), torch.tensor([0, 1]))
    (mnist,) = build_sets(["mnist_5k"], test=test, classes=data.DIGITS, image_size=16,
                          in_chans=1, seed=0, cache_dir=tmp_path)
    assert mnist.images.shape == (5000, 1, 16, 16) and mnist.images.dtype == torch.uint8
    assert torch.bincount(mnist.labels).tolist() == [500] * 10
    with pytest.raises(data.DataError, match=r"'mnist_5k' has 10 classes \(0, 1, 2, 3, …\)"):
        build_sets(["mnist_5k"], test=test, classes=data.ANIMALS, image_size=16, in_chans=1,
                   seed=0, cache_dir=tmp_path)


def test_start_up_problems_name_each_bad_set():
    d = OmegaConf.structured(DataConfig(
        kind="digits", name="digits",
        eval_sets=["mnist_5k", "blur-2", "jpeg-0", "glyphs", "corrupt-5", "cifar"]))
    got = evaluate.problems(d)
    assert len(got) == 4
    assert "'blur-2' names no corruption" in got[0]
    assert "'jpeg-0' has severity 0" in got[1]
    assert "'glyphs' has 62 classes (0, 1, 2, 3, …) but data=digits has 10 classes" in got[2]
    assert "'cifar' is neither a dataset" in got[3]


def test_a_run_logs_every_eval_set_calibration_and_the_reliability_plot(project):
    overrides = [*FAST, "trainer.epochs=2", "data.fraction=0.3", "trainer.eval_every_epoch=true",
                 "data.eval_sets=[mnist_5k,gaussian_noise-3,corrupt-2]"]
    cfg, choices = compose_with_choices(overrides)
    result = train.train(cfg, tracking.Launch(choices=choices, overrides=overrides))
    client = MlflowClient(store_uri(project))
    run = client.get_run(result.run_id)
    metrics = run.data.metrics
    sets = ["mnist_5k", "gaussian_noise-3", "corrupt-2", *(f"{c}-2" for c in CORRUPTIONS)]
    for name in sets:
        for metric in ("acc", "balanced_acc", "nll", "ece", "nll_ts", "ece_ts"):
            assert 0 <= metrics[f"eval/{name}/{metric}"] < math.inf, (name, metric)
    for metric in ("nll", "ece", "brier", "ece_ts", "nll_ts", "temperature"):
        assert metrics[f"test/{metric}"] > 0
    assert metrics["test/acc"] == result.test_acc
    # every epoch, then once more with the best weights
    assert len(client.get_metric_history(run.info.run_id, "eval/mnist_5k/acc")) == 3
    plots = {Path(a.path).name for a in client.list_artifacts(run.info.run_id, "plots")}
    assert "reliability.png" in plots
