"""`xferlab rank`: candidates scored from frozen features, logged as kind=rank runs."""

from __future__ import annotations

from operator import attrgetter

from tests.conftest import experiment_runs, xferlab

CANDIDATES = ["backbone=resnet_tiny,vit_tiny", "backbone.pretrained=none", "data.fraction=0.5",
              "tracking.experiment=study"]
RANK_RUNS = "tags.kind = 'rank'"
OLDEST_FIRST = attrgetter("info.start_time", "info.run_id")  # MLflow's order for start_time ASC


def test_rank_scores_each_candidate_and_logs_it(tmp_path):
    out = xferlab("rank", *CANDIDATES, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "backbone=resnet_tiny" in out.stdout and "backbone=vit_tiny" in out.stdout
    runs = sorted(experiment_runs(tmp_path, "study", RANK_RUNS), key=OLDEST_FIRST)
    assert [r.data.params["backbone.name"] for r in runs] == ["test_resnet", "test_vit"]
    for run in runs:
        assert run.info.status == "FINISHED"
        m = run.data.metrics
        assert 0 <= m["rank/knn"] <= 1 and 0 <= m["rank/linear_probe"] <= 1
        assert "rank/logme" in m and m["time/features_s"] >= 0
        assert run.data.params["data.fraction"] == "0.5"
        assert run.data.tags["feature_cache"] == "0 hits, 1 misses"

    again = xferlab("rank", *CANDIDATES, cwd=tmp_path)  # features come from the cache now
    assert again.returncode == 0, again.stderr
    rerun = sorted(experiment_runs(tmp_path, "study", RANK_RUNS), key=OLDEST_FIRST)[2:]
    assert [r.data.tags["feature_cache"] for r in rerun] == ["1 hits, 0 misses"] * 2
    for first, second in zip(runs, rerun, strict=True):
        for key in ("rank/logme", "rank/knn", "rank/linear_probe"):
            assert first.data.metrics[key] == second.data.metrics[key], key


def test_a_bad_candidate_is_refused_before_any_scoring(tmp_path):
    out = xferlab("rank", "backbone=resnet_tiny,resnet99", cwd=tmp_path)
    assert out.returncode == 2 and "resnet99" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "outputs" / "mlflow.db").exists()
