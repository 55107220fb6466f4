"""The shared figure style (xferlab/figures.py) and a run's figures, logged to a real MLflow
store in a temporary folder and read back."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient
from PIL import Image

from tests.conftest import store_uri
from xferlab import figures, tracking
from xferlab.evaluate import reliability, reliability_figure
from xferlab.tracking import artifacts

HISTORY = [{"train/loss": 2.0, "val/loss": 1.6, "val/acc": 0.41, "val/acc_best": 0.41},
           {"train/loss": 0.9, "val/loss": 0.8, "val/acc": 0.74, "val/acc_best": 0.74},
           {"train/loss": 0.5, "val/loss": 0.9, "val/acc": 0.74, "val/acc_best": 0.74}]
CFG = """\
backbone:
  name: resnet18
freeze:
  strategy: lp_ft
data:
  kind: animal_mnist
  name: animal_mnist
  fraction: 0.05
seed: 1
"""
COMMIT = "0123456789abcdef0123456789abcdef01234567"
CAPTION = ("data: animal_mnist · backbone: resnet18 · LP-FT · labelled fraction 0.05 · seed 1 · "
           "commit 0123456")


def test_labels_come_from_the_table_and_unknown_keys_stay_as_they_are():
    assert figures.label("freeze") == "freezing strategy"
    assert figures.label("tags.choice.freeze") == "freezing strategy"  # as a report names it
    assert figures.label("freeze.strategy") == "freezing strategy"
    assert figures.label("data.fraction") == figures.label("params.data.fraction") \
        == "labelled fraction"
    assert figures.label("test/acc") == "test accuracy"
    assert figures.label("val/loss") == "validation loss"
    assert figures.label("eval/corrupt-3/ece_ts") == "corrupt-3 ECE, temperature-scaled"
    assert figures.label("my.own_key") == "my.own_key"
    assert figures.label("test/my_metric") == "test/my_metric"
    assert figures.value_label("freeze", "linear_probe") == "linear probe"
    assert figures.value_label("freeze.strategy", "lp_ft") == "LP-FT"
    assert figures.value_label("choice.freeze", "block_k") == "one block (k)"
    assert figures.value_label("backbone.name", "vit_tiny") == "ViT-Tiny"
    assert figures.value_label("freeze", "my_plugin_strategy") == "my_plugin_strategy"
    assert figures.value_label("data.fraction", "full") == "full"  # not a strategy there


def test_the_first_eight_series_differ_in_marker_line_style_and_colour():
    styles = [figures.series(i) for i in range(8)]
    for part in ("marker", "linestyle", "color"):
        assert len({str(s[part]) for s in styles}) == 8, part


def test_a_strategy_keeps_its_style_in_every_plot_and_others_go_in_order():
    full = figures.styles(["freeze"], [("full",)])[0]
    assert figures.styles(["params.freeze.strategy"], [("scratch",), ("full",)])[1] == full
    assert figures.styles(["freeze"], [("lp_ft",), ("full",), ("linear_probe",)])[1] == full
    in_order = [figures.series(0), figures.series(1)]
    assert figures.styles(["seed"], [(3,), (1,)]) == in_order  # not an option group
    assert figures.styles(["freeze"], [("full",), ("mine",)]) == in_order  # an unknown option
    # the 1st and 9th options share a colour: in one plot they go in order instead
    options = list(figures.VALUES["freeze"])
    assert figures.styles(["freeze"], [(options[0],), (options[8],)]) == in_order
    assert figures.styles(["freeze", "head"], [("full", "mlp")]) == [figures.series(0)]


def test_caption_lines_name_data_backbone_seeds_and_commits():
    assert figures.commit_text([(COMMIT, False)] * 3) == "commit 0123456"
    assert figures.commit_text([(COMMIT, True)]) == "commit 0123456 (dirty)"
    assert figures.commit_text([(COMMIT, False), ("fedcba9" + "0" * 33, False)]) == \
        "commits 0123456, fedcba9"
    assert figures.commit_text([(None, False), (float("nan"), False)]) == "commit unknown"
    assert artifacts.run_caption(CFG, {"git.commit": COMMIT, "git.dirty": "False"}) == CAPTION


def test_learning_curves_count_epochs_from_1_mark_the_best_and_show_test_accuracy():
    fig = artifacts.learning_curves_figure(HISTORY, test_acc=0.7)
    loss_ax, acc_ax = fig.axes
    assert loss_ax.get_yscale() == "log"
    lines = {line.get_label(): line for line in acc_ax.get_lines()}
    assert list(lines["validation"].get_xdata()) == [1, 2, 3]  # epoch i + 1 is history[i]
    # the first epoch that reached the best validation accuracy: the weights that were tested
    assert list(lines["best epoch (2)"].get_xdata()) == [2, 2]
    assert "best epoch (2)" in {line.get_label() for line in loss_ax.get_lines()}
    test = lines["test accuracy 0.700"]
    assert (list(test.get_xdata()), list(test.get_ydata())) == ([2], [0.7])
    assert acc_ax.get_ylim() == (0, 1)  # accuracy on its whole range, not zoomed


def test_confusion_matrix_has_readable_counts_row_rates_and_a_colour_bar():
    classes = ["cat", "dog", "horse"]
    matrix = torch.tensor([[8, 2, 0], [1, 9, 0], [0, 0, 0]])
    fig = artifacts.confusion_figure(matrix, classes)
    ax, bar = fig.axes
    assert bar.get_ylabel() == "share of the true class (row-normalised)"
    assert np.allclose(ax.get_images()[0].get_array(), [[0.8, 0.2, 0], [0.1, 0.9, 0], [0, 0, 0]])
    texts = {t.get_text(): t.get_fontsize() for t in ax.texts}
    assert {"8", "2", "1", "9", "80%", "20%", "10%", "90%"} == set(texts)  # no zero cells
    assert min(texts[c] for c in "8219") >= 9
    assert [t.get_text() for t in ax.get_xticklabels()] == classes
    assert ax.get_title() == "test confusion matrix: accuracy 0.850 on 20 images"


def test_png_is_200_dpi_and_pdf_and_svg_are_vector(tmp_path):
    fig = figures.caption(artifacts.learning_curves_figure(HISTORY, test_acc=0.7), CAPTION)
    with Image.open(figures.save(fig, tmp_path / "curves.png")) as image:
        assert image.format == "PNG" and min(image.info["dpi"]) >= 199.5
        assert image.width >= 8 * 200  # 8 inches at 200 dpi
    pdf = figures.save(fig, tmp_path / "curves.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and b"/Subtype /Image" not in pdf
    svg = figures.save(fig, tmp_path / "curves.svg").read_text()
    assert "<image" not in svg and CAPTION in svg  # vectors, and the caption as text
    assert figures.save(fig, tmp_path / "again.svg").read_text() == svg  # no date inside


def test_a_runs_figures_are_logged_at_200_dpi_with_its_caption(tmp_path):
    uri = store_uri(tmp_path)
    (tmp_path / "outputs").mkdir()
    # as a run does (tracking.setup): an earlier test in this process may have set another
    exp = tracking.setup(uri, "figures")
    client = MlflowClient(uri)
    run_id = client.create_run(exp, tags={"git.commit": COMMIT, "git.dirty": "True"}
                               ).info.run_id
    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "head.safetensors").write_bytes(b"0")
    labels, pred = torch.tensor([0, 0, 1, 1, 2]), torch.tensor([0, 1, 1, 1, 2])
    logits = torch.nn.functional.one_hot(pred, 3).float() * 3
    extra = reliability_figure(reliability(logits, labels), reliability(logits / 2, labels))
    artifacts.log_run_artifacts(run_id, tmp_path / "ckpt", cfg=CFG, overrides=[],
                                history=HISTORY, labels=labels, pred=pred,
                                classes=["a", "b", "c"],
                                figures={"plots/reliability.png": lambda: extra})
    assert figures.caption_of(extra) == CAPTION.replace("0123456", "0123456 (dirty)")
    plots = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert plots == {"plots/learning_curves.png", "plots/confusion_matrix.png",
                     "plots/reliability.png"}
    for path in sorted(plots):
        local = client.download_artifacts(run_id, path, str(tmp_path))
        with Image.open(local) as image:
            assert image.format == "PNG" and min(image.info["dpi"]) >= 199.5, path


@pytest.mark.parametrize("n", [1, 40])
def test_confusion_matrix_of_one_or_many_classes_draws(n):
    matrix = torch.eye(n, dtype=torch.long) * 3
    fig = artifacts.confusion_figure(matrix, [f"class {i}" for i in range(n)])
    assert len(fig.axes) == 2 and bool(fig.axes[0].texts) == (n <= 25)
