"""The command line: ``ser fit|validate|test|predict`` (LightningCLI) with data -> model links."""

from __future__ import annotations

import contextlib
import importlib
import logging
import signal
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Literal
from unittest import mock

import numpy as np
import torch
from jsonargparse import Namespace
from lightning.pytorch.callbacks import EarlyStopping, Timer
from lightning.pytorch.cli import ArgsType, LightningCLI
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ser.abstention import format_risk_coverage
from ser.audio import HOP_SECONDS, WINDOW_SECONDS
from ser.calibration import TemperatureScaling
from ser.callbacks import DropEmptyRun, EpochSummary, StopOnNonFiniteLoss
from ser.checkpointing import AtomicCheckpointIO, best_checkpoint, last_checkpoint
from ser.data.base import SERDataModule
from ser.data.pooled import CORPUS_SEPARATOR, Pooled
from ser.data.splits import SplitSpec
from ser.errors import SERError
from ser.fairness import fairness_scalars, format_fairness
from ser.io import ensure_writable, refuse_to_replace
from ser.report import (
    figure,
    format_table,
    metrics_from_confusion,
    per_corpus_metrics,
    report_files,
    write_report,
)
from ser.spec import (
    OOD_KEY,
    SPEC_KEY,
    check_finite,
    check_fits,
    class_path,
    read_checkpoint,
    read_spec,
)
from ser.tasks.classification import EmotionClassifier
from ser.transforms.conditions import perturbation

log = logging.getLogger("ser")

#: Attributes every DataModule knows after ``__init__``, passed into the model (data -> model).
LINKED = {
    "n_classes": "n_classes", "n_features": "n_features", "sample_rate": "sample_rate",
    "class_names": "class_names", "pipeline_spec": "pipeline", "corpus": "corpus",
    "corpus_names": "corpora",
}  # fmt: skip


def default_precision() -> str:
    """``bf16-mixed`` where the hardware computes bfloat16 natively (a CUDA GPU with bfloat16, or a
    CPU with AVX512_BF16 or AMX), else ``32-true``. Tests run in float32 either way."""
    if torch.cuda.is_available():
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true"
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:  # not Linux: no cheap way to tell
        return "32-true"
    return "bf16-mixed" if flags & {"avx512_bf16", "amx_bf16"} else "32-true"


def trainer_defaults() -> dict:
    """What every run shares; a config sets only what is its own (epochs, its logger name, extra
    callbacks). ``callbacks`` are added to those a config lists. New objects on every call: a
    checkpoint callback remembers its folder and best score."""
    return {
        "devices": 1,
        "precision": default_precision(),
        "log_every_n_steps": 10,
        # ser's loaders shard themselves across processes without repeating a clip
        "use_distributed_sampler": False,
        "logger": {
            "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
            # no hp_metric stuck at -1: runs enter the HParams tab with their UARs (log_hparams)
            "init_args": {"save_dir": "lightning_logs", "name": "ser", "default_hp_metric": False},
        },
        "callbacks": [best_checkpoint(), last_checkpoint(), EpochSummary()],
    }


#: ``--ckpt_path`` values Lightning resolves itself.
CKPT_ALIASES = ("last", "best", "hpc", "registry")


class SERCLI(LightningCLI):
    """LightningCLI with the data linked into the model and a report after every test."""

    def add_arguments_to_parser(self, parser) -> None:
        for source, target in LINKED.items():
            parser.link_arguments(
                f"data.{source}", f"model.init_args.{target}", apply_on="instantiate"
            )
        parser.add_argument(
            "--test_after_fit", type=bool, default=True,
            help="After fit, test a checkpoint on the test split and write the report.",
        )  # fmt: skip
        parser.add_argument(
            "--test_ckpt", type=Literal["best", "last"], default="best",
            help="The checkpoint tested after fit: best (by the ModelCheckpoint's monitor) or "
            "last (the final epoch's weights, checkpoints/last.ckpt).",
        )  # fmt: skip
        parser.add_argument(
            "--score", type=Literal["crops", "recordings"], default="crops",
            help="What the test scores: crops (each clip's centre crop, as validation) or "
            "recordings (each whole recording in windows, probabilities averaged, as ser predict).",
        )  # fmt: skip
        parser.add_argument(
            "--calibrate", type=bool, default=True,
            help="Calibrated probabilities: after fit, fit a temperature on the validation split "
            "and store it in the checkpoints (best and last), which ser test, ser predict and "
            "exports apply. false: no fitting, and ser test/validate use temperature 1.",
        )  # fmt: skip
        parser.add_argument(
            "--recalibrate", type=bool, default=False,
            help="ser test/validate --ckpt_path: first fit that checkpoint's temperature on the "
            "validation split and write it into the file (e.g. one trained before calibration).",
        )  # fmt: skip
        parser.add_argument(
            "--perturb", type=str | None, default=None,
            help="Test under a recording condition, applied to every test clip: 'noise DB' "
            "(white noise at DB dB SNR), 'pink DB', 'babble DB', 'reverb RT60' (s), 'telephone', "
            "'clip FRACTION' (of the peak), 'opus LEVEL' / 'mp3 LEVEL' (a lossy codec, 0 best to "
            "1 smallest). The robustness benchmark runs a series of them.",
        )  # fmt: skip
        parser.add_argument(
            "--overwrite", type=bool, default=False,
            help="Replace the test report files (<run folder>/test/) an earlier test wrote there "
            "(a fixed --trainer.logger.init_args.version, or --trainer.logger false: the current "
            "folder); without it they are an error before any work.",
        )  # fmt: skip
        for name, default, what in (
            ("window", WINDOW_SECONDS, "window length"),
            ("hop", HOP_SECONDS, "step between windows"),
        ):
            parser.add_argument(
                f"--{name}", type=float, default=default, help=f"--score recordings: {what} (s)."
            )

    def parse_arguments(self, parser, args: ArgsType) -> None:
        """Parse, then fail before any work on a ``--ckpt_path`` that is not there or not a
        checkpoint of ``ser fit``: Lightning loads the file next (for its hyperparameters)."""
        super().parse_arguments(parser, args)
        self._checkpoint: tuple[str, dict, dict] | None = None
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or ckpt_path in CKPT_ALIASES:
            return
        path = Path(ckpt_path).expanduser()
        what = f"--ckpt_path {ckpt_path}"
        if not path.is_file():
            raise SERError(
                f"{what}: no such checkpoint; runs keep theirs in "
                "lightning_logs/<model>/version_N/checkpoints/"
            )
        checkpoint = read_checkpoint(path, what)  # weights_only: a pickle's code is never run
        spec = checkpoint.get(SPEC_KEY) if isinstance(checkpoint, dict) else None
        if self.config[subcommand].get("recalibrate") and isinstance(spec, dict):
            # --recalibrate fits both again: a damaged stored one is what it repairs
            refitted = ("temperature", OOD_KEY)
            checkpoint = {
                **checkpoint,
                SPEC_KEY: {k: v for k, v in spec.items() if k not in refitted},
            }
        self._checkpoint = (what, checkpoint, read_spec(checkpoint, what, path.parent))

    def before_instantiate_classes(self) -> None:
        """``ser test --ckpt_path``: fit the test data to the checkpoint."""
        if self.subcommand == "test" and self._checkpoint is not None:
            adapt_data_to_checkpoint(self.config.test.data, self._checkpoint[2])

    def _check_checkpoint(self) -> None:
        """``--ckpt_path``: refuse before any work weights that do not fit the model the config
        built, that are not finite, or (fit) a file that cannot resume a run."""
        if getattr(self, "_checkpoint", None) is None:
            return
        what, checkpoint, spec = self._checkpoint
        self._checkpoint = None
        weights = checkpoint.get("state_dict")
        if not isinstance(weights, dict):
            raise SERError(f"{what}: holds no state_dict; give a checkpoint that `ser fit` wrote")
        check_fits(weights, self.model.state_dict(), what, spec)
        check_finite(weights, what)
        if "pytorch-lightning_version" not in checkpoint:
            raise SERError(f"{what}: not a Lightning checkpoint of `ser fit` (no version entry); "
                           "ser predict and ser export read it, ser test does not")  # fmt: skip
        if self.subcommand == "fit" and not {"optimizer_states", "loops"} <= checkpoint.keys():
            raise SERError(
                f"{what}: holds the weights only (no optimizer or loop state), so a fit cannot "
                "resume from it; resume from checkpoints/last.ckpt of the run"
            )

    def instantiate_trainer(self, **kwargs):
        trainer = super().instantiate_trainer(**kwargs)
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer.callbacks.append(
            TemperatureScaling(config.get("calibrate", True), config.get("recalibrate", False))
        )
        trainer.callbacks.append(DropEmptyRun())
        trainer.callbacks.append(StopOnNonFiniteLoss())
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not one the config chose
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def _check_run_folder(self) -> None:
        """Fail before any work when the run folder cannot be written, or when the test report
        would replace one an earlier test wrote there without ``--overwrite``."""
        if not self.trainer.is_global_zero:
            return
        folder = ensure_writable(
            self.trainer.log_dir or self.trainer.default_root_dir,
            "run folder (--trainer.logger.init_args.save_dir)",
        )
        config = self.config[self.subcommand]
        tests = self.subcommand == "test" or (
            self.subcommand == "fit"
            and config.get("test_after_fit", True)
            and not self.trainer.fast_dev_run
        )
        if tests:  # the folder after_test writes the report into
            refuse_to_replace(report_files(folder / "test"), config.get("overwrite", False),
                              f"ser {self.subcommand}: the test report in {folder / 'test'}")  # fmt: skip

    def _check_clips(self) -> None:
        """Fail before any work when a crop (``--data.max_seconds``) or a scored window
        (``--window``) is too short for the net, saying the minimum."""
        pipeline, net = getattr(self.datamodule, "pipeline", None), getattr(self.model, "net", None)
        if pipeline is None or net is None:  # a module of the user's own: nothing to go by
            return
        pipeline.check_duration(net, self.datamodule.max_seconds, "--data.max_seconds")
        config = self.config[self.subcommand]
        if config.get("score", "crops") == "recordings":
            pipeline.check_duration(net, config.window, "--window")

    def before_validate(self) -> None:
        self._check_checkpoint()
        self._check_clips()
        self._check_run_folder()

    def before_fit(self) -> None:
        trainer = self.trainer
        if trainer.max_epochs == 0 or trainer.max_steps == 0:
            raise SERError(
                "--trainer.max_epochs 0 / --trainer.max_steps 0: nothing would be trained, and the "
                "test after fit would score an untrained net; use ser test --ckpt_path to test"
            )
        for name in ("accumulate_grad_batches", "check_val_every_n_epoch"):
            value = getattr(trainer, name)
            if value is not None and value < 1:
                raise SERError(f"--trainer.{name} ({value}) must be at least 1")
        if trainer.gradient_clip_val is not None and not trainer.gradient_clip_val >= 0:
            raise SERError(
                f"--trainer.gradient_clip_val ({trainer.gradient_clip_val}) must be >= 0 (a "
                "negative one would turn the gradients around); null: no clipping"
            )
        stoppers = (EarlyStopping, Timer)
        if trainer.max_epochs == -1 and trainer.max_steps == -1:
            if not any(isinstance(c, stoppers) for c in trainer.callbacks):
                raise SERError(
                    "--trainer.max_epochs -1: with no --trainer.max_steps, --trainer.max_time or "
                    "EarlyStopping callback the run never ends; give a number of epochs"
                )
            log.warning("--trainer.max_epochs -1: training runs until early stopping or "
                        "--trainer.max_time stops it")  # fmt: skip
        if self.config[self.subcommand].get("perturb"):  # refused now, not after training
            perturbation(self.config[self.subcommand].perturb)
        self._check_checkpoint()
        self._check_clips()
        self._check_run_folder()

    def before_test(self) -> None:
        self._check_checkpoint()
        self._check_clips()
        self._check_run_folder()
        self._set_scoring()

    def _set_scoring(self) -> None:
        """``--score recordings``: the test split scores whole recordings as ``ser predict``."""
        config = self.config[self.subcommand]
        if config.get("score", "crops") == "recordings":
            self.datamodule.score_recordings(config.window, config.hop)
        if config.get("perturb"):
            augment, rate = perturbation(config.perturb), self.datamodule.sample_rate
            self.datamodule.perturb_test(lambda wave, lengths: augment(wave, lengths, rate))

    def after_fit(self) -> None:
        if (
            not self.config[self.subcommand].get("test_after_fit", True)
            or self.trainer.fast_dev_run
        ):
            self.log_hparams({})
            return
        if self.config[self.subcommand].get("test_ckpt", "best") == "last":
            # The monitor-less checkpoint (checkpoints/last.ckpt) holds the latest epoch.
            latest = (c for c in self.trainer.checkpoint_callbacks if c.monitor is None)
            ckpt_path = next((c.best_model_path for c in latest if c.best_model_path), None)
        else:
            callback = self.trainer.checkpoint_callback
            ckpt_path = callback.best_model_path if callback is not None else None
        self._set_scoring()
        self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=ckpt_path or None)
        self.after_test()

    def after_test(self) -> None:
        """Print the per-class table and write the confusion matrix (CSV, PNG), metrics JSON and
        TensorBoard figure into ``<log dir>/test``."""
        log_dir = self.trainer.log_dir  # every rank: with several processes it is a collective
        confusion = self.model.test_confusion
        if confusion is None or not self.trainer.is_global_zero:
            return
        confusion = confusion.numpy().astype(np.int64)
        class_names = self.model.class_names
        out_dir = Path(log_dir or ".") / "test"
        compared = getattr(self.datamodule, "compared_classes", class_names)
        extra = {
            "ckpt_path": self.trainer.ckpt_path,
            "data": type(self.datamodule).__name__,
            "compared_classes": compared,
        }
        logger = self.trainer.logger
        add_figure = getattr(getattr(logger, "experiment", None), "add_figure", None)
        # Printed first: the figures reach the user even if the folder cannot be written.
        print(format_table(metrics_from_confusion(confusion, class_names)), flush=True)
        if list(compared) != list(class_names):
            print(f"compared on the classes the model and the data share: {', '.join(compared)}",
                  flush=True)  # fmt: skip
        extra["score"] = self.config[self.subcommand].get("score", "crops")
        extra["perturb"] = self.config[self.subcommand].get("perturb")
        per_corpus = per_corpus_metrics(self.model.test_predictions, class_names)
        if per_corpus:
            extra["per_corpus"] = per_corpus
            for name, m in per_corpus.items():
                print(f"{name}: UAR {figure(m['uar'])}  accuracy {figure(m['accuracy'])}  "
                      f"macro F1 {figure(m['macro_f1'])}  ({m['n_clips']} clips)", flush=True)  # fmt: skip
        temperature = float(self.model.temperature)
        extra["temperature"] = temperature
        extra["calibration"] = (
            "none (temperature 1)" if temperature == 1.0 else "temperature scaling (validation)"
        )
        gender_of = getattr(self.datamodule, "speaker_gender", lambda speaker: None)
        speakers = {row["speaker"] for row in self.model.test_predictions}
        genders = {s: g for s in speakers if (g := gender_of(s)) is not None}
        paths = write_report(
            confusion, class_names, out_dir, extra=extra, add_figure=add_figure,
            predictions=self.model.test_predictions, genders=genders,
        )  # fmt: skip
        ece = f"ECE {paths.metrics['ece']:.4f}, " if "ece" in paths.metrics else ""
        print(f"{ece}temperature {temperature:.3f} (calibration: {extra['calibration']})",
              flush=True)  # fmt: skip
        if "risk_coverage" in paths.metrics:  # what --min-confidence buys
            print(format_risk_coverage(paths.metrics["risk_coverage"]), flush=True)
        if "fairness" in paths.metrics:
            print(format_fairness(paths.metrics["fairness"]), flush=True)
            if logger is not None:
                logger.log_metrics(fairness_scalars(paths.metrics["fairness"]),
                                   step=self.trainer.global_step)  # fmt: skip
        for kind, path in paths.files.items():
            print(f"wrote {kind}: {path}", flush=True)
        self.log_hparams(
            {
                f"hp/test_{k}": paths.metrics[k]
                for k in ("uar", "accuracy", "ece")
                if paths.metrics.get(k) is not None
            }
        )

    def log_hparams(self, metrics: dict[str, float]) -> None:
        """Enter the run into TensorBoard's HParams tab with its hyperparameters, seed and data,
        its best validation UAR (after fit) and ``metrics`` (test UAR, accuracy, ECE)."""
        logger = self.trainer.logger
        if not isinstance(logger, TensorBoardLogger) or not self.trainer.is_global_zero:
            return
        callback = self.trainer.checkpoint_callback
        score = getattr(callback, "best_model_score", None)
        if score is not None and getattr(callback, "monitor", None) == "val/uar":
            metrics = {"hp/val_uar_best": float(score), **metrics}
        config = self.config[self.subcommand] if self.subcommand else self.config
        params = {
            **getattr(logger, "hparams", {}),
            "seed": config.get("seed_everything"),
            "data": type(self.datamodule).__name__,
            "frontend": self.datamodule.pipeline_spec["frontend"]["class_path"],
            "balance_classes": getattr(self.datamodule, "balance_classes", False),
            "calibrate": config.get("calibrate", True),
        }
        logger.log_hyperparams(params, metrics=metrics, step=self.trainer.global_step)
        logger.finalize("success")  # the run's writer was closed after the stage: flush this too


def adapt_data_to_checkpoint(data, spec: dict) -> None:
    """Make the data of ``ser test --ckpt_path`` what the checkpoint was trained on.

    The checkpoint's feature pipeline (front-end, noise reduction) and sample rate replace the
    config's, so a test always sees the features the model was trained with; the data's labels
    are mapped onto the checkpoint's class indices, clips of classes the model lacks are dropped
    (``target_classes``), and a corpus other than those the model was trained on is tested on
    all of its clips (split protocol ``all``): a cross-corpus test. In a pool
    (:class:`ser.data.Pooled`), each corpus is judged on its own.

    Args:
        data: the ``data`` part of the parsed config (``class_path``/``init_args``), changed in place.
        spec: the spec of the checkpoint to test (:func:`ser.spec.read_spec`).
    """
    args = data.init_args
    args.target_classes = list(spec["class_names"])
    args.sample_rate = spec["sample_rate"]
    frontend, denoise = spec["pipeline"]["frontend"], spec["pipeline"]["denoise"]
    init_args = dict(frontend["init_args"])
    given = args.get("frontend")  # a weights file the user names is read, wherever it is
    given_args = getattr(given, "init_args", None) or {}
    if init_args.get("weights") is None and given_args.get("weights") is not None:
        if canonical_class_path(given.class_path) == canonical_class_path(frontend["class_path"]):
            init_args["weights"] = given_args["weights"]
    args.frontend = Namespace(class_path=frontend["class_path"], init_args=Namespace(**init_args))
    args.denoise = None if denoise is None else Namespace(**denoise)
    normalization = spec["pipeline"].get("normalization")
    args.normalization = None if normalization is None else normalization["level"]
    trained_on = spec.get("corpus")
    if not trained_on:
        return
    trained = set(trained_on.split(CORPUS_SEPARATOR))
    pooled = canonical_class_path(data.class_path) == class_path(Pooled)
    for corpus in args.corpora if pooled else [data]:
        if canonical_class_path(corpus.class_path) in trained:
            continue
        log.info("cross-corpus test: model trained on %s, testing on every clip of %s",
                 trained_on, corpus.class_path)  # fmt: skip
        corpus_args = corpus.init_args
        if corpus_args.get("split") is None:
            corpus_args.split = Namespace(**asdict(SplitSpec()))
        corpus_args.split.protocol = "all"


def canonical_class_path(name: str) -> str:
    """``ser.data.RAVDESS`` -> ``ser.data.ravdess.RAVDESS``: where the class is defined."""
    module_name, _, attr = name.rpartition(".")
    try:
        return class_path(getattr(importlib.import_module(module_name), attr))
    except (ImportError, AttributeError):
        return name


def build_cli(args: ArgsType = None, run: bool = True) -> SERCLI:
    """The ``ser`` LightningCLI on ``args``: with ``run=False`` (no subcommand), the linked data and
    model of a config without training, for tools that need them (``ser cv``, benchmarks)."""
    # LightningCLI warns when given ``args`` while the process has command-line arguments (ser cv
    # runs its folds in-process): those arguments were already read, by whoever called this.
    with contextlib.ExitStack() as stack:
        if args is not None:
            stack.enter_context(mock.patch.object(sys, "argv", sys.argv[:1]))
        return _build_cli(args, run)


def _build_cli(args: ArgsType, run: bool) -> SERCLI:
    return SERCLI(
        EmotionClassifier,
        SERDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=args,
        run=run,
        save_config_kwargs={"overwrite": True},
        trainer_defaults=trainer_defaults(),
    )


def main(args: ArgsType = None) -> SERCLI:
    """Entry point of the training commands of ``ser`` and ``python -m ser``; returns the CLI."""
    try:
        cli = build_cli(args)
    except SIGTERMException:  # Lightning's own exit for it has status 0: a killed job looked done
        log.error("stopped by SIGTERM before the run finished; resume it with --ckpt_path "
                  "<run folder>/checkpoints/last.ckpt")  # fmt: skip
        raise SystemExit(128 + signal.SIGTERM) from None
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.barrier()  # the other processes wait while rank 0 writes the report
        torch.distributed.destroy_process_group()
    return cli


if __name__ == "__main__":
    main()
