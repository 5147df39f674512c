"""Several processes (DDP, 2 CPU processes over gloo): one report, every test clip counted once,
the same test figures as one process, disjoint shards, precise BN over the whole split."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from functools import partial
from pathlib import Path
from types import SimpleNamespace

import lightning.pytorch as L
import pytest
import torch

from ser.calibration import fit_temperature, validation_logits
from ser.callbacks import PreciseBatchNorm, StopOnNonFiniteLoss
from ser.data import RAVDESS
from ser.data.dataset import EpochSampler, ShardSampler
from ser.data.splits import SplitSpec
from ser.models import CNN2D
from ser.tasks import EmotionClassifier

from .helpers import (
    CONFIG,
    RAVDESS_YAML,
    free_port,
    logged_steps,
    run_ser,
    tree_env,
    write_crema,
    write_ravdess,
)

DDP = ["--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu"]
SPLIT = {"test_speakers": ["19", "20"], "val_speakers": ["15", "16"]}


def ser(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return run_ser(*args, cwd=cwd, env={"SER_CACHE_DIR": str(cwd / "cache")})


def test_epoch_sampler_shards_cover_the_split_with_equal_lengths():
    whole = list(EpochSampler(11, seed=3))
    for world in (2, 3):
        shards = [list(EpochSampler(11, seed=3, rank=r, world_size=world)) for r in range(world)]
        assert {len(s) for s in shards} == {-(-11 // world)}  # equal step counts
        keys = [k for s in shards for k in s]
        assert set(keys) == set(whole)  # every clip, each with the crop it has in one process
        assert len(keys) - len(set(keys)) == len(keys) - 11  # repeats only to even the shards
    sampler = EpochSampler(11, seed=3, rank=1, world_size=2)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) != first  # a new order each epoch, the same on every rank


def test_shard_sampler_counts_every_clip_once():
    shards = [list(ShardSampler(11, r, 3)) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(11))


# a whole two-process fit and test (over a minute); the default run starts two gloo processes in
# test_a_non_finite_loss_on_one_rank_stops_every_rank
@pytest.mark.slow
def test_ddp_fit_and_test_count_every_clip_once_and_match_one_process(tmp_path: Path):
    root = write_ravdess(tmp_path / "ravdess", clips_per_emotion=4)
    common = [
        "--data.emotions", "[neutral, happy, sad, angry]", "--data.batch_size", "4",
        "--data.max_seconds", "0.5", "--data.split", json.dumps(SPLIT),
        "--trainer.enable_progress_bar", "false",
        "--trainer.precision", "32-true",  # precise BN is recomputed below in float32
    ]  # fmt: skip
    fit = ser("fit", "--config", CONFIG, "--data", RAVDESS_YAML, "--data.root", str(root),
              "--trainer.max_epochs", "2", *common, *DDP, cwd=tmp_path)  # fmt: skip
    assert fit.returncode == 0, fit.stderr[-3000:]
    runs = sorted((tmp_path / "lightning_logs" / "cnn2d").iterdir())
    assert [r.name for r in runs] == ["version_0"]  # one run folder, one report
    assert fit.stdout.count("UAR ") == 1 and "Traceback" not in fit.stderr
    metrics = json.loads((runs[0] / "test" / "metrics.json").read_text())
    assert metrics["n_clips"] == 2 * 4 * 4  # the test split, no clip twice
    assert sum(map(sum, metrics["confusion_matrix"])) == 32

    checkpoint = str(runs[0] / "checkpoints" / "last.ckpt")
    config = str(runs[0] / "config.yaml")
    reports = {}
    for name, extra in (("one", ["--trainer.devices", "1"]), ("two", DDP)):
        result = ser("test", "--config", config, "--ckpt_path", checkpoint, *extra,
                     "--trainer.logger.init_args.save_dir", str(tmp_path / name), cwd=tmp_path)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        reports[name] = tmp_path / name / "cnn2d" / "version_0" / "test"
    one, two = (json.loads((reports[n] / "metrics.json").read_text()) for n in ("one", "two"))
    assert two["n_clips"] == one["n_clips"] == 32
    assert two["confusion_matrix"] == one["confusion_matrix"]
    assert two["uar"] == pytest.approx(one["uar"])
    rows = [(reports[n] / "predictions.csv").read_text().splitlines() for n in ("one", "two")]
    assert len(rows[0]) == 33 and rows[0] == rows[1]  # the same clips, order and probabilities

    # Precise BN ran over the whole training split across the two processes: recomputing it in
    # one process with the checkpoint's weights gives the statistics the checkpoint holds.
    saved = torch.load(checkpoint, weights_only=True)
    state, frontend = saved["state_dict"], saved["ser"]["pipeline"]["frontend"]
    data = RAVDESS(root=str(root), emotions=["neutral", "happy", "sad", "angry"], batch_size=4,
                   max_seconds=0.5, split=SplitSpec(**SPLIT), verify=False, frontend=frontend)  # fmt: skip
    data.setup("fit")
    model = EmotionClassifier(
        partial(CNN2D, channels=[16, 32, 64, 128], convs_per_block=2, dropout=0.3),
        data.n_classes, data.n_features, data.sample_rate,
    )  # fmt: skip
    model.load_state_dict(state)
    trainer = SimpleNamespace(
        sanity_checking=False, state=SimpleNamespace(fn="fit"), datamodule=data,
        precision_plugin=SimpleNamespace(forward_context=torch.no_grad), global_rank=0,
        world_size=1,
    )  # fmt: skip
    # The temperature was fitted on the validation logits of both processes together: what one
    # process fits on the whole validation split.
    one_process = fit_temperature(*validation_logits(trainer, model))
    assert saved["ser"]["temperature"] == pytest.approx(one_process, rel=1e-4)
    assert two["temperature"] == one["temperature"] == saved["ser"]["temperature"]
    PreciseBatchNorm().on_validation_start(trainer, model)
    for key, value in model.state_dict().items():
        if "running_" in key:
            assert torch.allclose(value, state[key], rtol=1e-4, atol=1e-5), key


@pytest.mark.slow  # 1.5 min; resuming is checked in the default run by tests/test_faults.py and
# the SIGTERM test of tests/test_help.py, and two processes by the DDP fit test above
def test_ddp_resume_reproduces_the_uninterrupted_run(tmp_path: Path):
    root = write_ravdess(tmp_path / "ravdess", clips_per_emotion=2)
    common = [
        "--config", CONFIG, "--data", RAVDESS_YAML, "--data.root", str(root),
        "--data.emotions", "[neutral, happy, sad, angry]", "--data.batch_size", "4",
        "--data.max_seconds", "0.5", "--data.split", json.dumps(SPLIT), "--test_after_fit", "false",
        "--trainer.enable_progress_bar", "false", *DDP,
    ]  # fmt: skip
    runs = {}
    for name, epochs, extra in (("whole", 3, []), ("cut", 2, []), ("cut", 3, ["resume"])):
        if extra:
            extra = ["--ckpt_path", str(runs["cut"] / "checkpoints" / "last.ckpt")]
        result = ser("fit", *common, "--trainer.max_epochs", str(epochs), *extra,
                     "--trainer.logger.init_args.save_dir", str(tmp_path / name), cwd=tmp_path)  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        runs[name] = sorted((tmp_path / name / "cnn2d").iterdir())[-1]
    whole, resumed = (
        torch.load(runs[n] / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        for n in ("whole", "cut")
    )
    for key, value in whole.items():
        assert torch.equal(value, resumed[key]), key
    # the resumed process trained only epoch 2 (a seeded run from scratch would match too)
    whole_steps = logged_steps(runs["whole"])
    assert len(whole_steps) == 3 and logged_steps(runs["cut"]) == whole_steps[2:]


@pytest.mark.slow  # about 25 s here: two fresh interpreters
def test_torchrun_fit_on_pooled_corpora_ends_with_one_report(tmp_path: Path):
    """``torchrun --nproc_per_node 2 -m ser fit`` (gloo on CPU) on two pooled corpora: exit 0,
    one report, every test clip once, per-corpus figures from both processes' clips."""
    corpora = [
        {"class_path": "ser.data.RAVDESS", "init_args": {
            "root": str(write_ravdess(tmp_path / "ravdess")), "split": SPLIT}},
        {"class_path": "ser.data.CREMAD", "init_args": {
            "root": str(write_crema(tmp_path / "crema", actors=range(1001, 1007))),
            "split": {"n_folds": 3}}},
    ]  # fmt: skip
    env = tree_env(SER_CACHE_DIR=str(tmp_path / "cache"))
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "-m", "ser",
         "fit", "--config", CONFIG, "--data", "ser.data.Pooled", "--data.corpora",
         json.dumps(corpora), "--data.emotions", "[neutral, happy, sad, angry]",
         "--data.batch_size", "8", "--data.max_seconds", "0.5", "--trainer.max_epochs", "1",
         "--trainer.enable_progress_bar", "false", *DDP],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    runs = list((tmp_path / "lightning_logs" / "cnn2d").iterdir())
    assert len(runs) == 1 and result.stdout.count("wrote json") == 1
    assert result.stderr.count("files into") == 2  # each corpus decoded by one rank, once
    metrics = json.loads((runs[0] / "test" / "metrics.json").read_text())
    ravdess, cremad = 2 * 4 * 2, 2 * 4 * 2  # test actors x classes x clips (sentences)
    assert metrics["n_clips"] == ravdess + cremad
    assert {k: v["n_clips"] for k, v in metrics["per_corpus"].items()} == {
        "ravdess": ravdess,
        "cremad": cremad,
    }


class NaNOnRankOne(L.LightningModule):
    """A linear model whose loss is NaN on rank 1 only, at its third batch."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        loss = self.layer(batch[0]).pow(2).mean()
        return loss * float("nan") if self.global_rank == 1 and batch_idx == 2 else loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        data = torch.utils.data.TensorDataset(torch.randn(32, 4))
        return torch.utils.data.DataLoader(data, batch_size=4)


def fit_one_rank(rank: int, port: int, out: str) -> None:
    """One of two DDP processes (gloo, CPU) fitting :class:`NaNOnRankOne` with
    :class:`StopOnNonFiniteLoss`; writes how its fit ended to ``out/rank<N>.txt``."""
    from lightning.pytorch.strategies import DDPStrategy

    os.environ.update(LOCAL_RANK=str(rank), NODE_RANK="0", WORLD_SIZE="2",
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))  # fmt: skip
    torch.set_num_threads(1)
    # a process left waiting in a collective fails after 30 s instead of hanging for 30 min
    strategy = DDPStrategy(process_group_backend="gloo", timeout=timedelta(seconds=30))
    trainer = L.Trainer(
        accelerator="cpu", devices=2, strategy=strategy, max_epochs=1, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[StopOnNonFiniteLoss()],
    )  # fmt: skip
    try:
        trainer.fit(NaNOnRankOne())
        ended = "finished"
    except Exception as err:  # noqa: BLE001 (what the test reads)
        ended = f"{type(err).__name__}: {err}"
    Path(out, f"rank{rank}.txt").write_text(f"{ended}\nstep {trainer.global_step}")


def test_a_non_finite_loss_on_one_rank_stops_every_rank(tmp_path: Path):
    """Rank 1's loss is NaN at its third step: both ranks stop there with an error (rank 0
    pointing to the other process), none is left waiting for a gradient exchange."""
    start = time.monotonic()
    context = torch.multiprocessing.start_processes(
        fit_one_rank, (free_port(), str(tmp_path)), nprocs=2, join=False, start_method="spawn"
    )
    while not context.join(timeout=5):
        assert time.monotonic() - start < 300, "the processes did not end"
    ended = {r: (tmp_path / f"rank{r}.txt").read_text() for r in (0, 1)}
    assert ended[1].startswith("SERError: training stopped: the loss is nan at step 2"), ended
    assert ended[0].startswith(
        "SERError: training stopped: the loss is not finite in another of the 2 processes at step 2"
    ), ended
    # no update after it; (a rank left waiting would end by the 30-s timeout, with its error)
    assert ended[0].endswith("step 2") and ended[1].endswith("step 2")
