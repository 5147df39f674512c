"""Several corpora in one run: a toy RAVDESS and a toy CREMA-D (their real layouts) pooled."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ser.cli import main
from ser.data import CREMAD, RAVDESS, ManifestCorpus, Pooled
from ser.data.dataset import EpochSampler
from ser.data.splits import SplitSpec
from ser.errors import SERError

from .helpers import CONFIG, RAVDESS_YAML, REPO, write_corpus, write_crema, write_ravdess

POOLED_YAML = REPO / "configs" / "data" / "pooled.yaml"
FOUR = ["neutral", "happy", "sad", "angry"]
SPLIT = SplitSpec(test_speakers=["19", "20"], val_speakers=["15", "16"])


@pytest.fixture
def corpora(tmp_path: Path) -> dict[str, Path]:
    return {
        "ravdess": write_ravdess(tmp_path / "ravdess", clips_per_emotion=2),
        "cremad": write_crema(tmp_path / "crema", actors=range(1001, 1007)),
    }


def pool(corpora: dict[str, Path], **kwargs) -> Pooled:
    return Pooled(
        [RAVDESS(root=str(corpora["ravdess"]), split=SPLIT, verify=False),
         CREMAD(root=str(corpora["cremad"]), split=SplitSpec(n_folds=3), verify=False)],
        **kwargs,
    )  # fmt: skip


def test_pooled_config_trains_reports_per_corpus_and_tests_in_and_across_corpora(
    corpora: dict[str, Path], tmp_path: Path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    config = yaml.safe_load(POOLED_YAML.read_text())  # the committed config, roots filled in
    ravdess, crema = config["init_args"]["corpora"]
    ravdess["init_args"].update(root=str(corpora["ravdess"]), split=vars(SPLIT))
    crema["init_args"]["root"] = str(corpora["cremad"])
    crema["init_args"]["split"]["n_folds"] = 3
    (tmp_path / "pooled.yaml").write_text(yaml.safe_dump(config))
    cli = main([
        "fit", "--config", CONFIG, "--data", str(tmp_path / "pooled.yaml"),
        "--data.batch_size", "8", "--data.max_seconds", "0.5", "--trainer.max_epochs", "2",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
    ])  # fmt: skip
    data, logged = cli.datamodule, cli.trainer.callback_metrics
    # RAVDESS's 8 and CREMA-D's 6 classes meet in CREMA-D's 6 (toy RAVDESS lacks two of them)
    assert data.class_names == ["neutral", "happy", "sad", "angry", "fearful", "disgust"]
    assert {"test/uar/ravdess", "test/uar/cremad", "test/accuracy/cremad"} <= set(logged)
    run = Path(cli.trainer.log_dir)
    scalars = EventAccumulator(str(run)).Reload().Tags()["scalars"]
    assert {"val/uar", "val/uar/ravdess", "val/uar/cremad", "val/f1/cremad"} <= set(scalars)
    test = data.datasets["test"].clips
    assert {c.speaker for c in test} == {"ravdess/19", "ravdess/20", "cremad/1001", "cremad/1002"}
    report = json.loads((run / "test" / "metrics.json").read_text())
    per_corpus = report["per_corpus"]
    assert per_corpus["ravdess"]["n_clips"] == 2 * 4 * 2  # 2 actors x 4 emotions x 2 clips
    assert per_corpus["cremad"]["n_clips"] == 2 * 6 * 2  # 2 actors x 6 emotions x 2 sentences
    assert report["n_clips"] == 16 + 24
    for name in ("ravdess", "cremad"):  # the logged metric and the report agree
        assert per_corpus[name]["uar"] == pytest.approx(float(logged[f"test/uar/{name}"]), abs=1e-6)
    assert "ravdess: UAR" in capsys.readouterr().out

    checkpoint = run / "checkpoints" / "last.ckpt"
    spec = torch.load(checkpoint, weights_only=True)["ser"]
    assert spec["corpus"] == "ser.data.ravdess.RAVDESS+ser.data.crema_d.CREMAD"
    # RAVDESS alone: one of the pooled corpora, so its own test speakers (in-corpus)
    out = tmp_path / "alone"
    main(["test", "--config", CONFIG, "--data", RAVDESS_YAML, "--data.root", str(corpora["ravdess"]),
          "--data.split", json.dumps(vars(SPLIT)), "--data.max_seconds", "0.5",
          "--ckpt_path", str(checkpoint),
          "--trainer.logger.init_args.save_dir", str(out)])  # fmt: skip
    alone = json.loads(next(out.glob("*/version_0/test/metrics.json")).read_text())
    assert alone["n_clips"] == 16 and alone["uar"] == pytest.approx(per_corpus["ravdess"]["uar"])


def test_leave_one_corpus_out(corpora: dict[str, Path]):
    data = pool(corpora, test_corpus="cremad", emotions=FOUR)
    data.setup("fit")
    stages = {s: Counter(c.corpus for c in d.clips) for s, d in data.datasets.items()}
    assert stages["test"] == {"cremad": 6 * 4 * 2}  # every CREMA-D clip of the four classes
    assert set(stages["train"]) == set(stages["val"]) == {"ravdess"}  # RAVDESS's test unused
    assert stages["train"]["ravdess"] + stages["val"]["ravdess"] == 4 * 4 * 2


def test_union_merge_and_sampling_shares(corpora: dict[str, Path]):
    union = pool(corpora, classes="union", merge={"calm": "neutral"})
    assert union.class_names == ["neutral", "happy", "sad", "angry", "fearful", "disgust",
                                 "surprised"]  # fmt: skip
    data = pool(corpora, weights={"ravdess": 1, "cremad": 3}, emotions=FOUR)
    data.setup("fit")
    clips = data.datasets["train"].clips
    weights = data.clip_weights(clips)
    n = len(clips)
    drawn = Counter()
    for epoch in range(40):
        sampler = EpochSampler(n, seed=0, weights=weights)
        sampler.set_epoch(epoch)
        order = [i for i, _ in sampler]
        shards = []
        for rank in range(2):  # two processes take disjoint positions of the same order
            shard = EpochSampler(n, seed=0, rank=rank, world_size=2, weights=weights)
            shard.set_epoch(epoch)
            shards.append([i for i, _ in shard])
        assert sorted(shards[0] + shards[1]) == sorted(order + order[: 2 * len(shards[0]) - n])
        drawn.update(clips[i].corpus for i in order)
    share = drawn["cremad"] / sum(drawn.values())
    assert 0.7 < share < 0.8  # 3 : 1, whatever the corpora's sizes (CREMA-D has 1.5x the clips)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"test_corpus": "emodb"}, "not one of"), ({"names": ["a", "a"]}, "distinct name"),
     ({"weights": {"savee": 1}}, "--data.weights"), ({"emotions": ["calm"]}, "classes union")],
)  # fmt: skip
def test_bad_pool_settings_are_one_line(corpora: dict[str, Path], kwargs: dict, message: str):
    with pytest.raises(SERError, match=message):
        pool(corpora, **kwargs)


def test_cv_leaves_each_corpus_out_once(corpora: dict[str, Path], tmp_path: Path, monkeypatch):
    from ser.__main__ import main as ser_main

    monkeypatch.chdir(tmp_path)
    pooled = [
        {"class_path": "ser.data.RAVDESS",
         "init_args": {"root": str(corpora["ravdess"]), "split": vars(SPLIT)}},
        {"class_path": "ser.data.CREMAD",
         "init_args": {"root": str(corpora["cremad"]), "split": {"n_folds": 3}}},
    ]  # fmt: skip
    out = tmp_path / "loco"
    ser_main(["cv", "--config", CONFIG, "--data", "ser.data.Pooled", "--data.corpora",
              json.dumps(pooled), "--data.emotions", json.dumps(FOUR), "--protocol", "corpus",
              "--out", str(out), "--data.batch_size", "8", "--data.max_seconds", "0.5",
              "--trainer.max_epochs", "1", "--trainer.enable_model_summary", "false"])  # fmt: skip
    results = json.loads((out / "results.json").read_text())
    assert [r["test_speakers"] for r in results] == [["ravdess"], ["cremad"]]
    assert [r["n_clips"] for r in results] == [6 * 4 * 2, 6 * 4 * 2]  # every clip of each
    assert json.loads((out / "pooled" / "metrics.json").read_text())["n_clips"] == 96
    for result, trained in zip(results, ("cremad", "ravdess"), strict=True):
        events = EventAccumulator(result["log_dir"])
        events.Reload()
        tags = events.Tags()["scalars"]
        # the left-out corpus is tested; the trained one has no test clips: absent, not 0.0
        assert f"test/uar/{result['test_speakers'][0]}" in tags
        assert f"test/uar/{trained}" not in tags


def test_balanced_classes_within_each_corpus_keep_its_share(corpora: dict[str, Path]):
    data = pool(corpora, weights={"ravdess": 1, "cremad": 3}, balance_classes=True)
    data.setup("fit")
    train = data.datasets["train"]
    weights = data.training_weights(train)  # (n_clips,)
    by_corpus: dict[str, float] = Counter()
    by_class: dict[tuple[str, int], float] = Counter()
    for clip, label, w in zip(train.clips, train.labels, weights.tolist(), strict=True):
        by_corpus[clip.corpus] += w
        by_class[clip.corpus, label] += w
    assert by_corpus["cremad"] / by_corpus["ravdess"] == pytest.approx(3)
    for name in ("ravdess", "cremad"):  # every class of a corpus as likely as the others
        shares = [v for (corpus, _), v in by_class.items() if corpus == name]
        assert len(shares) > 1 and max(shares) == pytest.approx(min(shares))


def test_a_pool_with_a_cached_front_end_hands_over_whole_clips(
    corpora: dict[str, Path], tmp_path: Path, monkeypatch
):
    """As a single corpus does: each clip whole (one cache entry), its features cropped by the
    pipeline; a waveform cropped at random would be a new entry, encoded again, at every step."""
    monkeypatch.setenv("SER_CACHE_DIR", str(tmp_path / "cache"))
    from ser.transforms import LogMelPitch

    data = pool(corpora, frontend=LogMelPitch, max_seconds=0.5)
    data.setup("fit")
    assert data.pipeline.feature_cache is not None and data.pipeline.max_frames is not None
    train = data.datasets["train"]
    assert train.max_samples is None
    longest = max(len(w) for w in train.waves)
    assert longest > 0.5 * data.sample_rate  # longer than the crop: handed over whole
    assert len(train[0]["waveform"]) == len(train.waves[0])


def manifest_corpus(root: Path, clips: dict[str, int], **kwargs) -> ManifestCorpus:
    """A manifest corpus of angry and sad tones: ``clips`` maps a speaker to its clips per class."""
    names = [f"audio/{spk}_{lab}_{i}.wav" for spk, n in clips.items()
             for lab in ("angry", "sad") for i in range(n)]  # fmt: skip
    write_corpus(root, names)
    rows = [f"{n},{n.split('_')[1]},{n.split('/')[1].split('_')[0]}" for n in names]
    (root / "list.csv").write_text("\n".join(["path,label,speaker", *rows]) + "\n")
    return ManifestCorpus(manifest=str(root / "list.csv"), verify=False, **kwargs)


def test_a_pool_checks_each_corpus_speaker_ids_and_held_out_part(
    corpora: dict[str, Path], tmp_path: Path, caplog
):
    ravdess = RAVDESS(root=str(corpora["ravdess"]), split=SPLIT, verify=False)
    variants = manifest_corpus(tmp_path / "m1", {"1": 3, "01": 3, "2": 3, "3": 3, "4": 3},
                               split=SplitSpec(test_speakers=["4"], val_speakers=["3"]))  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="ser"):
        Pooled([ravdess, variants]).setup("fit")
    assert "ManifestCorpus: speakers 01, 1 look like one speaker written differently" in caplog.text
    # the pool's test fold has RAVDESS's 8 clips of angry and sad, but the manifest's part of it
    # is one clip per class: its per-corpus figure would mean nothing
    ravdess = RAVDESS(root=str(corpora["ravdess"]), split=SPLIT, verify=False)
    tiny = manifest_corpus(tmp_path / "m2", {"2": 3, "3": 3, "4": 1},
                           split=SplitSpec(test_speakers=["4"], val_speakers=["3"]))  # fmt: skip
    part = r"the test fold of manifestcorpus holds 2 clips .* from speakers manifestcorpus/4: "
    with pytest.raises(SERError, match=part + "fewer than 4 clips .* n_folds of that corpus's "
                       "split in --data.corpora"):  # fmt: skip
        Pooled([ravdess, tiny]).setup("fit")
