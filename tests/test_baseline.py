"""``ser baseline``: the SVM on pooled hand-crafted features, end to end on a toy RAVDESS."""

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from ser.__main__ import main as ser_main
from ser.baseline import feature_groups, group_importance, main
from ser.transforms import Handcrafted, LogMel

from .helpers import REPO, write_encoder

DATA = str(REPO / "configs" / "data" / "ravdess.yaml")


def toy_args(root: Path, out: Path) -> list[str]:
    return [
        "--data", DATA, "--data.root", str(root), "--data.split.test_speakers", '["19", "20"]',
        "--data.split.val_speakers", '["15", "16"]', "--out_dir", str(out),
    ]  # fmt: skip


def handcrafted(*features: str) -> str:
    """The YAML of a raw (``normalize: false``) Handcrafted front-end of ``features``."""
    return (
        "{class_path: ser.transforms.Handcrafted, "
        f"init_args: {{features: [{', '.join(features)}], normalize: false}}}}"
    )


#: seed S1's time-domain features and seed S4's sub-band spectral ones (the old ``zcr_rms`` and
#: ``spectral``), and the names the baseline gives them.
ZCR_RMS = handcrafted("zcr", "rms")
SPECTRAL = handcrafted("band_centroid", "band_bandwidth", "band_energy")
NAMES = ["handcrafted-zcr-rms", "handcrafted-band_centroid-band_bandwidth-band_energy"]


def test_baseline_end_to_end(ravdess_root: Path, tmp_path: Path, capsys):
    out = tmp_path / "baseline"
    results = main([*toy_args(ravdess_root, out), "--frontends", f"[{ZCR_RMS}, {SPECTRAL}]"])
    assert [r.name for r in results] == NAMES
    # the toy classes are tones an octave apart: the sub-band spectral features separate them
    spectral = results[1]
    assert spectral.test["uar"] == 1.0 and spectral.val_uar == 1.0
    assert spectral.n_dims == 2 * 3 * 5  # mean and std of SC, SBW, SBE in 5 bands
    for name in NAMES:
        metrics = json.loads((out / name / "metrics.json").read_text())
        assert metrics["name"] == name and metrics["n_clips"] == 16
        assert (out / name / "confusion_matrix.png").stat().st_size > 0
        assert (out / name / "confusion_matrix.csv").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["best"] in NAMES and len(summary["results"]) == 2
    assert [r["name"] for r in summary["results"]] == NAMES
    printed = capsys.readouterr().out
    assert "best by validation UAR" in printed and "UAR 1.0000" in printed


def test_baseline_is_a_subcommand(ravdess_root: Path, tmp_path: Path):
    ser_main(["baseline", *toy_args(ravdess_root, tmp_path / "b"), "--frontends", f"[{ZCR_RMS}]"])
    assert (tmp_path / "b" / NAMES[0] / "metrics.json").is_file()


def test_baseline_bad_options(ravdess_root: Path, tmp_path: Path, capsys):
    with pytest.raises(SystemExit):
        main([*toy_args(ravdess_root, tmp_path), "--frontends", "[ser.transforms.NoSuchFrontend]"])
    with pytest.raises(SystemExit) as err:
        ser_main(["baseline", *toy_args(ravdess_root, tmp_path), "--C", "0"])
    assert err.value.code == 2 and "--C must be positive" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        ser_main(["baseline", *toy_args(ravdess_root, tmp_path), "--permutation_repeats", "-1"])
    assert err.value.code == 2
    assert "--permutation_repeats must be 0 or more" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        ser_main(["baseline", *toy_args(tmp_path / "missing", tmp_path)])
    assert err.value.code == 2 and "corpus not found" in capsys.readouterr().err


def test_baseline_and_explore_take_a_pretrained_encoder(
    ravdess_root: Path, tmp_path: Path, monkeypatch
):
    """An encoder's (B, L, D, F) features: the SVM gets each layer's statistics, explore plots the
    top layer."""
    write_encoder(monkeypatch, tmp_path / "torch", "HUBERT_BASE")
    encoder = "{class_path: ser.transforms.SpeechEncoder, init_args: {bundle: HUBERT_BASE}}"
    result = main([*toy_args(ravdess_root, tmp_path / "b"), "--frontends", f"[{encoder}]"])[0]
    assert result.n_dims == 2 * 2 * 16  # mean and std of 16 dims in each of the 2 layers
    # above chance (1/4) on 16 test clips: the tones differ even in a random encoder's statistics
    assert result.test["uar"] > 0.25 and result.name.startswith("speechencoder")
    ser_main(["explore", "--data", DATA, "--data.root", str(ravdess_root), "--data.frontend",
              encoder, "--out", str(tmp_path / "fig")])  # fmt: skip
    assert (tmp_path / "fig" / "features.png").stat().st_size > 5000


def test_permutation_importance_ranks_the_group_that_carries_the_label():
    """Only "pitch" separates the classes: shuffling it drops UAR to about chance, shuffling the
    noise groups changes nothing."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 60)
    x = rng.standard_normal((len(y), 8))
    x[:, 0:2] += 3.0 * y[:, None]  # pitch: the label
    groups = [("rms", np.array([2, 3])), ("pitch", np.array([0, 1])), ("mfcc", np.arange(4, 8))]
    train = np.arange(len(y)) % 2 == 0
    model = make_pipeline(StandardScaler(), SVC()).fit(x[train], y[train])
    names = ["a", "b", "c"]
    result = group_importance(model, x[~train], y[~train], groups, names, repeats=5)
    assert result["uar"] > 0.9
    ranked = result["groups"]
    assert [r["group"] for r in ranked][0] == "pitch"
    assert ranked[0]["uar_drop"] > 0.4 and ranked[0]["accuracy_drop"] > 0.4
    assert all(abs(r["uar_drop"]) < 0.1 for r in ranked[1:])
    assert {r["group"]: r["n_dims"] for r in ranked} == {"pitch": 2, "rms": 2, "mfcc": 4}


def test_feature_groups_name_the_handcrafted_features():
    frontend = Handcrafted(16000, features=["rms", "band_energy", "pitch"])  # 1 + 5 + 1 channels
    groups = dict(feature_groups(frontend, 14))  # mean of the 7 channels, then their std
    assert list(groups) == ["rms", "band_energy", "pitch"]
    assert groups["rms"].tolist() == [0, 7] and groups["pitch"].tolist() == [6, 13]
    assert groups["band_energy"].tolist() == [1, 2, 3, 4, 5, 8, 9, 10, 11, 12]
    blocks = feature_groups(LogMel(16000, n_mels=20), 40)  # no named features: bin blocks
    assert [name for name, _ in blocks][:2] == ["bins 0-2", "bins 3-5"] and len(blocks) == 8
    assert sorted(np.concatenate([c for _, c in blocks]).tolist()) == list(range(40))


def test_baseline_reports_the_importance_of_feature_groups(ravdess_root: Path, tmp_path: Path):
    """The toy classes are tones of 220-1760 Hz at one level: the sub-band energies tell them
    apart, the RMS level does not."""
    out = tmp_path / "baseline"
    main([*toy_args(ravdess_root, out), "--frontends", f"[{handcrafted('rms', 'band_energy')}]"])
    report = out / "handcrafted-rms-band_energy"
    with open(report / "permutation_importance.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["group"] for r in rows] == ["band_energy", "rms"]
    assert float(rows[0]["uar_drop"]) > 0.3 and abs(float(rows[1]["uar_drop"])) < 0.1
    metrics = json.loads((report / "metrics.json").read_text())
    importance = metrics["permutation_importance"]
    assert importance["uar"] == metrics["uar"] and importance["repeats"] == 10
    assert importance["groups"][0]["uar_drop"] == pytest.approx(
        float(rows[0]["uar_drop"]), abs=1e-6
    )
    main([*toy_args(ravdess_root, tmp_path / "off"), "--permutation_repeats", "0",
          "--frontends", f"[{handcrafted('rms')}]"])  # fmt: skip
    assert not (tmp_path / "off" / "handcrafted-rms" / "permutation_importance.csv").exists()
