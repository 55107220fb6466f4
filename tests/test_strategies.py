"""Every freezing strategy runs end to end through the train recipe and logs params/trainable."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import FAST, store_uri
from xferlab import tracking
from xferlab.launch.compose import compose_with_choices, options
from xferlab.recipes import train


@pytest.mark.parametrize("strategy", options("freeze"))
def test_each_strategy_trains_and_logs_trainable_params(project, strategy):
    overrides = [f"freeze={strategy}", *FAST, "data.fraction=0.3", "freeze.lp_epochs=1"]
    cfg, choices = compose_with_choices(overrides)
    result = train.train(cfg, tracking.Launch(choices=choices, overrides=overrides))
    run = MlflowClient(store_uri(project)).get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["choice.freeze"] == strategy
    trainable, total = run.data.metrics["params/trainable"], run.data.metrics["params/total"]
    if strategy in ("full", "scratch", "layer_decay"):
        assert trainable == total
    else:  # the head trains, part of the backbone does not
        assert 0 < trainable < total
