import csv
import json

import numpy as np
from sklearn.metrics import f1_score, precision_score, recall_score

from ser.confusion import metrics_from_confusion
from ser.report import format_table, write_report


def test_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 4, 200), rng.integers(0, 4, 200)
    y_pred[:100] = y_true[:100]
    confusion = np.zeros((4, 4), dtype=int)
    np.add.at(confusion, (y_true, y_pred), 1)
    m = metrics_from_confusion(confusion, list("abcd"))
    assert np.isclose(m["uar"], recall_score(y_true, y_pred, average="macro"))
    assert np.isclose(m["macro_f1"], f1_score(y_true, y_pred, average="macro"))
    assert np.isclose(m["accuracy"], (y_true == y_pred).mean())
    precision = precision_score(y_true, y_pred, average=None)
    assert np.allclose([m["per_class"][c]["precision"] for c in "abcd"], precision)
    assert m["n_clips"] == 200


def test_absent_class_does_not_count_in_uar():
    confusion = np.array([[5, 0, 0], [1, 4, 0], [0, 0, 0]])
    m = metrics_from_confusion(confusion, ["x", "y", "z"])
    assert np.isclose(m["uar"], (1.0 + 0.8) / 2)
    assert m["absent_classes"] == ["z"]
    assert m["per_class"]["z"] == {"recall": None, "precision": None, "f1": None, "support": 0}
    (row,) = [line for line in format_table(m).splitlines() if line.startswith("z ")]
    assert row.split()[:5] == ["z", "-", "-", "-", "0"] and "0.000" not in row
    assert row.endswith("absent from the test set")
    # predicted although absent: its precision is a real 0, its recall still absent
    m = metrics_from_confusion(np.array([[4, 1], [0, 0]]), ["x", "z"])
    assert m["per_class"]["z"]["recall"] is None and m["per_class"]["z"]["precision"] == 0.0


def test_absent_class_is_marked_in_json_and_figure(tmp_path):
    figures = []
    report = write_report(np.array([[5, 0, 0], [1, 4, 0], [0, 0, 0]]), ["x", "y", "z"],
                          tmp_path, add_figure=lambda tag, fig: figures.append(fig))  # fmt: skip
    data = json.loads(report.files["json"].read_text())
    assert data["absent_classes"] == ["z"] and data["per_class"]["z"]["recall"] is None
    with open(report.files["csv"]) as f:  # counts, support and recall; absent is not 0.000
        assert list(csv.reader(f)) == [
            ["true\\predicted", "x", "y", "z", "support", "recall"],
            ["x", "5", "0", "0", "5", "1.0000"],
            ["y", "1", "4", "0", "5", "0.8000"],
            ["z", "0", "0", "0", "0", "absent"],
        ]
    (fig,) = figures
    normalised = fig.axes[1]
    assert [t.get_text() for t in normalised.get_yticklabels()] == ["x", "y", "z (absent)"]
    texts = {(round(t.get_position()[0]), round(t.get_position()[1])): t.get_text()
             for t in normalised.texts}  # fmt: skip
    assert texts[(0, 2)] == "-" and texts[(0, 0)] == "1.00"


def test_write_report(tmp_path):
    confusion = np.array([[3, 1], [2, 4]])
    figures = []
    report = write_report(
        confusion,
        ["sad", "angry"],
        tmp_path / "out",
        add_figure=lambda tag, fig: figures.append(tag),
    )
    with open(report.files["csv"]) as f:
        rows = list(csv.reader(f))
    assert rows == [
        ["true\\predicted", "sad", "angry", "support", "recall"],
        ["sad", "3", "1", "4", "0.7500"],
        ["angry", "2", "4", "6", "0.6667"],
    ]
    assert report.files["png"].read_bytes()[:4] == b"\x89PNG"
    data = json.loads(report.files["json"].read_text())
    assert data["confusion_matrix"] == [[3, 1], [2, 4]] and data["n_clips"] == 10
    assert figures == ["test/confusion_matrix"]
    assert not list((tmp_path / "out").glob(".*tmp"))  # no temporary files left behind
