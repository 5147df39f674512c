"""Faults: a fit killed mid-epoch resumes to the same result; same seed, same metrics."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import lightning as L
import pytest
import torch

from .helpers import CONFIG, FAST, RAVDESS_YAML, fit, logged_steps, run_ser, write_ravdess

# 16 training clips in batches of 4: 4 steps per epoch; step 10 is in the middle of epoch 2.
TINY = ["--model.net.init_args.channels", "[4, 8]", "--trainer.max_epochs", "3"]
KILL_STEP = 10


def ser_fit(cwd: Path, root: Path, *extra: str) -> subprocess.CompletedProcess:
    cwd.mkdir(parents=True, exist_ok=True)
    return run_ser("fit", "--config", CONFIG, "--data", RAVDESS_YAML, "--data.root", str(root),
                   *FAST, *TINY, *extra, cwd=cwd)  # fmt: skip


# a fit killed and resumed in subprocesses (most of a minute); the default run resumes in
# tests/test_help.py::test_a_run_stopped_by_sigterm_exits_non_zero_and_can_resume
@pytest.mark.slow
def test_killed_fit_resumes_to_the_same_test_metrics(tmp_path: Path):
    root = write_ravdess(tmp_path / "ravdess")
    whole = ser_fit(tmp_path / "whole", root)
    assert whole.returncode == 0, whole.stderr[-3000:]

    killed = ser_fit(
        tmp_path / "killed", root,
        "--trainer.callbacks+=tests.faults.KillAtStep", f"--trainer.callbacks.step={KILL_STEP}",
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    run_dir = tmp_path / "killed" / "lightning_logs" / "cnn2d" / "version_0"
    last = run_dir / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["epoch"] == 1  # written every epoch; 2 died half-way
    assert not (run_dir / "test").exists()

    resumed = ser_fit(tmp_path / "killed", root, "--ckpt_path", str(last))
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    def metrics(cwd: Path, version: int) -> dict:
        path = cwd / "lightning_logs" / "cnn2d" / f"version_{version}" / "test" / "metrics.json"
        data = json.loads(path.read_text())
        return {k: data[k] for k in ("uar", "accuracy", "macro_f1", "confusion_matrix")}

    assert metrics(tmp_path / "killed", 1) == metrics(tmp_path / "whole", 0)
    # the resumed process trained only epoch 2 (a run from scratch, seeded, would match too)
    whole_steps = logged_steps(tmp_path / "whole" / "lightning_logs" / "cnn2d" / "version_0")
    resumed_steps = logged_steps(tmp_path / "killed" / "lightning_logs" / "cnn2d" / "version_1")
    assert len(whole_steps) == 3 and resumed_steps == whole_steps[2:]

    def weights(cwd: Path, version: int) -> dict:
        path = cwd / "lightning_logs" / "cnn2d" / f"version_{version}" / "checkpoints" / "last.ckpt"
        return torch.load(path, weights_only=True)["state_dict"]

    # The toy task is easy enough for any run to ace it: the weights show an exact replay.
    whole_weights, resumed_weights = weights(tmp_path / "whole", 0), weights(tmp_path / "killed", 1)
    assert all(torch.equal(whole_weights[k], resumed_weights[k]) for k in whole_weights)


def test_same_seed_gives_identical_metrics_and_weights(tmp_path: Path, monkeypatch):
    root = write_ravdess(tmp_path / "ravdess")
    results = []
    for run in ("a", "b"):
        (tmp_path / run).mkdir()
        monkeypatch.chdir(tmp_path / run)
        fit(root, *TINY[:2], "--trainer.max_epochs", "2")
        run_dir = tmp_path / run / "lightning_logs" / "cnn2d" / "version_0"
        weights = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        results.append((json.loads((run_dir / "test" / "metrics.json").read_text()), weights))
    (metrics_a, weights_a), (metrics_b, weights_b) = results
    for key in ("uar", "accuracy", "macro_f1", "confusion_matrix"):
        assert metrics_a[key] == metrics_b[key]
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


class DiesWhenWritten:
    def __reduce__(self):
        raise OSError("disk full")


def test_a_checkpoint_write_that_dies_leaves_the_previous_one(tmp_path: Path):
    from ser.checkpointing import AtomicCheckpointIO

    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"epoch": 1}, str(path))
    with pytest.raises(OSError, match="disk full"):
        io.save_checkpoint({"epoch": 2, "state": DiesWhenWritten()}, str(path))
    assert torch.load(path, weights_only=True) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


class ScriptedUAR(L.LightningModule):
    """A one-weight module whose validation UAR follows ``uars``, epoch by epoch."""

    def __init__(self, uars: list[float]) -> None:
        super().__init__()
        self.uars, self.weight = uars, torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.weight - batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/uar", self.uars[self.current_epoch])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_runs_keep_last_ckpt_of_the_latest_epoch_and_the_best_by_validation_uar(tmp_path: Path):
    """``last.ckpt`` is rewritten after every epoch under that one name (the file to resume
    from), and ``best-epochNN-uarX.XXX.ckpt`` is the epoch with the highest validation UAR; both
    written atomically and read back weights-only, a bad file named in the error."""
    from torch.utils.data import DataLoader, TensorDataset

    from ser.checkpointing import AtomicCheckpointIO, best_checkpoint, last_checkpoint
    from ser.errors import SERError

    loader = DataLoader(TensorDataset(torch.ones(4)), batch_size=2)
    for _ in range(2):  # a second run into the same folder replaces last.ckpt, no last-v1
        trainer = L.Trainer(
            max_epochs=3, accelerator="cpu", logger=False, enable_progress_bar=False,
            enable_model_summary=False, default_root_dir=tmp_path,
            callbacks=[last_checkpoint(), best_checkpoint()], plugins=[AtomicCheckpointIO()],
        )  # fmt: skip
        trainer.fit(ScriptedUAR([0.5, 0.7, 0.6]), loader, loader)
    folder = tmp_path / "checkpoints"
    assert sorted(p.name for p in folder.iterdir()) == [
        "best-epoch01-uar0.700-v1.ckpt", "best-epoch01-uar0.700.ckpt", "last.ckpt"]  # fmt: skip
    assert torch.load(folder / "last.ckpt", weights_only=True)["epoch"] == 2
    with pytest.raises(TypeError, match="^AtomicCheckpointIO takes no storage_options$"):
        AtomicCheckpointIO().save_checkpoint({}, str(folder / "x.ckpt"), storage_options={})
    (folder / "bad.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(SERError, match=f"^checkpoint {folder / 'bad.ckpt'}"):
        AtomicCheckpointIO().load_checkpoint(str(folder / "bad.ckpt"))
