"""The test report's risk-coverage table (what ``--min-confidence`` buys) and per-group figures
(gender from each corpus's own metadata, speaker), with the gap between groups."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ser.abstention import risk_coverage
from ser.data import CREMAD, SAVEE, TESS, EmoDB, ManifestCorpus, Pooled
from ser.data.gender import canonical_gender
from ser.data.ravdess import RAVDESS
from ser.fairness import fairness, fairness_scalars, format_fairness
from ser.report import write_report

CLASSES = ["a", "b"]


def rows(spec: list[tuple[str, int, int, float]]) -> list[dict]:
    """Test rows from (speaker, label, predicted, confidence of the prediction)."""
    out = []
    for speaker, label, predicted, confidence in spec:
        probabilities = [1 - confidence, 1 - confidence]
        probabilities[predicted] = confidence
        out.append({"path": f"{speaker}-{len(out)}.wav", "speaker": speaker, "label": label,
                    "probabilities": probabilities})  # fmt: skip
    return out


def test_risk_coverage_keeps_the_most_confident_clips():
    # 10 clips, most confident first: the 5 most confident right, the rest wrong
    confidences = np.linspace(0.99, 0.55, 10)
    labels = np.array([0, 1] * 5)
    predicted = np.where(np.arange(10) < 5, labels, 1 - labels)
    probabilities = np.stack([1 - confidences, confidences], axis=1)
    probabilities[predicted == 0] = probabilities[predicted == 0][:, ::-1]
    table = risk_coverage(probabilities, labels, CLASSES)
    assert [r["n_clips"] for r in table] == [10, 9, 8, 5]
    assert [r["accuracy"] for r in table] == pytest.approx([0.5, 5 / 9, 5 / 8, 1.0])
    assert table[3]["min_confidence"] == pytest.approx(confidences[4])
    assert table[3]["uar"] == 1.0 and table[0]["uar"] == pytest.approx(0.5)


def test_fairness_per_gender_and_speaker_with_the_gap():
    test = rows([("01", 0, 0, 0.9), ("01", 1, 0, 0.9), ("02", 0, 0, 0.9), ("02", 1, 1, 0.9),
                 ("03", 1, 1, 0.9)])  # fmt: skip
    genders = {"01": "male", "02": "female"}  # 03 unknown: in no gender group
    report = fairness(test, CLASSES, genders)
    assert report["gender"]["groups"] == {
        "female": {"uar": 1.0, "accuracy": 1.0, "n_clips": 2},
        "male": {"uar": 0.5, "accuracy": 0.5, "n_clips": 2},
    }
    assert report["gender"]["uar_gap"] == 0.5 and report["gender"]["worst_uar"] == "male"
    assert report["speaker"]["groups"]["03"] == {"uar": 1.0, "accuracy": 1.0, "n_clips": 1}
    assert "per-gender UAR: female 1.000 (2), male 0.500 (2); gap 0.500 (UAR)" in format_fairness(
        report
    )
    assert fairness_scalars(report)["test_gender/uar/male"] == 0.5
    # one group only: no gap; no known gender: no gender entry at all (never a 0.0 group)
    only_women = fairness(test, CLASSES, {"02": "female"})["gender"]
    assert list(only_women["groups"]) == ["female"] and "uar_gap" not in only_women
    assert "gender" not in fairness(test, CLASSES, {})


def test_write_report_adds_the_risk_coverage_and_fairness(tmp_path: Path):
    test = rows([("01", 0, 0, 0.9), ("02", 1, 0, 0.6), ("02", 1, 1, 0.8)])
    figures = []
    report = write_report(
        np.array([[1, 0], [1, 1]]), CLASSES, tmp_path, predictions=test,
        genders={"01": "male", "02": "female"}, add_figure=lambda tag, fig: figures.append(tag),
    )  # fmt: skip
    data = json.loads(report.files["json"].read_text())
    # at least the share asked: ceil(0.9 * 3) = 3 clips, ceil(0.5 * 3) = 2
    assert [r["n_clips"] for r in data["risk_coverage"]] == [3, 3, 3, 2]
    assert set(data["fairness"]["gender"]["groups"]) == {"female", "male"}
    assert report.files["risk_coverage"].read_bytes()[:4] == b"\x89PNG"
    assert "test/risk_coverage" in figures


def test_each_corpus_knows_its_speakers_genders(tmp_path: Path):
    ravdess = RAVDESS(root=str(tmp_path))
    assert [ravdess.speaker_gender(s) for s in ("01", "02", "23", "24")] == [
        "male", "female", "male", "female"
    ]  # fmt: skip
    emodb = EmoDB(root=str(tmp_path))
    assert [emodb.speaker_gender(s) for s in ("03", "08", "16", "99")] == [
        "male", "female", "female", None
    ]  # fmt: skip
    assert SAVEE(root=str(tmp_path)).speaker_gender("DC") == "male"
    assert TESS(root=str(tmp_path)).speaker_gender("OAF") == "female"
    crema = tmp_path / "crema"
    crema.mkdir()
    (crema / "VideoDemographics.csv").write_text(
        "ActorID,Age,Sex,Race,Ethnicity\n1001,51,Male,Caucasian,Not Hispanic\n"
        "1002,21,Female,Caucasian,Not Hispanic\n"
    )
    cremad = CREMAD(root=str(crema))
    assert [cremad.speaker_gender(s) for s in ("1001", "1002", "1003")] == ["male", "female", None]
    assert CREMAD(root=str(tmp_path)).speaker_gender("1001") is None  # no demographics file
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,label,speaker,gender\na.wav,angry,s1,F\nb.wav,sad,s2,m\n")
    corpus = ManifestCorpus(manifest=str(manifest), verify=False)
    assert [corpus.speaker_gender(s) for s in ("s1", "s2", "s3")] == ["female", "male", None]
    pooled = Pooled(corpora=[ravdess, emodb], names=["rav", "emo"])
    assert [pooled.speaker_gender(s) for s in ("rav/01", "emo/08", "x/01")] == [
        "male", "female", None
    ]  # fmt: skip
    assert [canonical_gender(v) for v in ("W", " female ", "", "nonbinary")] == [
        "female", "female", None, "nonbinary"
    ]  # fmt: skip
