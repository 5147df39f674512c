"""The model card (``README.md``) of a model folder, generated from the run that trained it.

What the checkpoint's spec says (classes, sample rate, front-end, net, corpus), what the run
folder beside the checkpoint adds (its ``config.yaml``: the split; its ``test/`` report: the
held-out speakers, per-class metrics and confusion matrix), the corpus's licence, intended use and
limits, and how to run the folder.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import yaml

from ser.report import figure

#: The licence entry of a corpus that records none (see ``SERDataModule.LICENCE``).
UNKNOWN_LICENCE = (
    "other",
    "the licence of the training data is not recorded here; check its terms before sharing or "
    "using this model commercially",
)


def corpus_class(corpus_path: str) -> type | None:
    """The corpus class of a spec's ``corpus`` entry (``ser.data.RAVDESS``), if ``ser.data`` has
    it (a pooled run's ``A+B`` and a user's own module have none)."""
    import ser.data

    module, _, name = corpus_path.rpartition(".")
    if "+" in corpus_path or not module.startswith("ser.data"):
        return None
    found = getattr(ser.data, name, None)
    return found if isinstance(found, type) else None


def run_folder(checkpoint: Path) -> Path | None:
    """The ``ser fit`` run folder of a checkpoint (``<run>/checkpoints/x.ckpt``), else ``None``."""
    parent = checkpoint.resolve().parent
    return parent.parent if parent.name == "checkpoints" else None


def test_report(checkpoint: Path) -> tuple[dict | None, str]:
    """The run's ``test/metrics.json`` when it scores ``checkpoint``; else ``None`` and why."""
    run = run_folder(checkpoint)
    path = None if run is None else run / "test" / "metrics.json"
    if path is None or not path.is_file():
        return None, (
            "No test report (`test/metrics.json`) was found in the run folder of this checkpoint: "
            "run `ser test --config <run>/config.yaml --ckpt_path <checkpoint>` and export again "
            "to include per-class test results."
        )
    metrics = json.loads(path.read_text())
    tested = metrics.get("ckpt_path")
    if tested and Path(tested).resolve() != checkpoint.resolve():
        return None, (
            f"The run's test report scores another checkpoint ({Path(tested).name}), not this one "
            f"({checkpoint.name}); test this one and export again to include its results."
        )
    return metrics, ""


def test_speakers(checkpoint: Path) -> list[str]:
    """The speakers of the run's test predictions (``test/predictions.csv``), sorted."""
    run = run_folder(checkpoint)
    path = None if run is None else run / "test" / "predictions.csv"
    if path is None or not path.is_file():
        return []
    with open(path, newline="") as f:
        return sorted({row["speaker"] for row in csv.DictReader(f) if row.get("speaker")})


def split_settings(checkpoint: Path) -> dict | None:
    """The data's ``split`` settings from the run's ``config.yaml`` (``None``: unknown)."""
    run = run_folder(checkpoint)
    path = None if run is None else run / "config.yaml"
    if path is None or not path.is_file():
        return None
    config = yaml.safe_load(path.read_text()) or {}
    split = (config.get("data") or {}).get("init_args", {}).get("split")
    return split if isinstance(split, dict) else None


def _settings(spec: dict) -> str:
    args = ", ".join(f"{k}={v}" for k, v in spec.get("init_args", {}).items())
    return f"`{spec['class_path']}`" + (f" ({args})" if args else "")


def _table(header: list[str], rows: list[list]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "| " + " | ".join("---" for _ in header) + " |",
        *("| " + " | ".join(str(c) for c in row) + " |" for row in rows),
    ]


def _results(metrics: dict) -> list[str]:
    lines = [
        f"UAR (unweighted average recall) **{figure(metrics['uar'], '.3f')}**, accuracy "
        f"{figure(metrics['accuracy'], '.3f')}, macro F1 {figure(metrics['macro_f1'], '.3f')} on "
        f"{metrics['n_clips']} "
        f"test clips (scored as {metrics.get('score', 'crops')}).",
        "",
    ]
    per_class = metrics["per_class"]
    lines += _table(
        ["class", "recall", "precision", "F1", "support"],
        [
            [c, *(figure(m[k], ".3f") for k in ("recall", "precision", "f1")), m["support"]]
            for c, m in per_class.items()
        ],
    )
    names = metrics["class_names"]
    lines += ["", "Confusion matrix (rows: true class, columns: predicted):", ""]
    lines += _table(
        ["true \\ predicted", *names],
        [[n, *row] for n, row in zip(names, metrics["confusion_matrix"], strict=True)],
    )
    return lines


def model_card(spec: dict, checkpoint: Path, folder_name: str) -> str:
    """The ``README.md`` of a model folder exported from ``checkpoint`` (whose spec is ``spec``)."""
    corpus_path = spec.get("corpus") or ""
    corpus = corpus_path.rpartition(".")[2]
    cls = corpus_class(corpus_path)
    licence, terms = getattr(cls, "LICENCE", None) or UNKNOWN_LICENCE
    speech = getattr(cls, "SPEECH", "") or "the corpus above"
    classes = spec["class_names"]
    metrics, missing = test_report(checkpoint)
    split = split_settings(checkpoint)
    speakers = test_speakers(checkpoint)
    known = {"version", "class_names", "sample_rate", "n_features", "pipeline", "net", "corpus"}
    denoise = spec["pipeline"].get("denoise")

    lines = [
        "---",
        f"license: {licence}",
        "library_name: ser",
        "pipeline_tag: audio-classification",
        "tags: [speech-emotion-recognition, audio]",
        "---",
        "",
        f"# Speech emotion recognition: {spec['net']['class_path'].rpartition('.')[2]} "
        f"on {corpus or 'unrecorded data'}",
        "",
        "A model folder written by `ser export --format hub` from the checkpoint "
        f"`{checkpoint.name}`: `model.safetensors` (the net's weights), `config.json` (everything "
        "inference needs: classes, sample rate, feature pipeline, net) and this card.",
        "",
        "## Model",
        "",
        f"- classes ({len(classes)}, in output order): {', '.join(classes)}",
        f"- sample rate: {spec['sample_rate']} Hz mono (other rates and channel counts are "
        "resampled and mixed down by `ser predict`)",
        f"- front-end: {_settings(spec['pipeline']['frontend'])}",
        f"- noise reduction: {'none' if denoise is None else denoise}",
        f"- net: {_settings(spec['net'])}",
    ]
    lines += [f"- {key}: {spec[key]}" for key in spec if key not in known]
    lines += [
        "",
        "## Training data",
        "",
        f"- corpus: `{corpus_path or 'not recorded'}`",
        f"- licence: {terms}",
    ]
    if split is not None:
        shown = {k: v for k, v in split.items() if v is not None}
        lines.append(f"- split: {', '.join(f'{k}={v}' for k, v in shown.items())}")
    else:
        lines.append("- split: not recorded (no `config.yaml` in the run folder)")
    if speakers:
        lines.append(f"- held-out test speakers: {', '.join(speakers)}")
    lines += ["", "## Test results", ""]
    lines += _results(metrics) if metrics is not None else [missing]
    lines += [
        "",
        "## Intended use and limits",
        "",
        "Research and prototyping of speech emotion recognition on short utterances. Trained on "
        f"{speech}: expect lower accuracy on spontaneous speech, "
        "other languages, accents, ages, microphones and noise. The classes are acted categories, "
        "not a measure of what a person feels; do not use it to make decisions about people.",
        "",
        "## How to run it",
        "",
        "```bash",
        "# with ser installed (pip install -e . in its repository)",
        f"ser predict {folder_name} clip.wav recordings/",
        "```",
        "",
        "```python",
        "from ser.inference import load_model, predict_files",
        "",
        f'model = load_model("{folder_name}")',
        'for p in predict_files(model, ["clip.wav"]):',
        "    print(p.path, dict(zip(model.class_names, p.probabilities.tolist())))",
        "```",
        "",
        "Share it on the Hugging Face Hub (`pip install huggingface_hub`, `hf auth login`):",
        "",
        "```bash",
        f'python -c "from huggingface_hub import HfApi; hub = HfApi(); '
        f"hub.create_repo('USER/{folder_name}', exist_ok=True); "
        f"hub.upload_folder(repo_id='USER/{folder_name}', folder_path='{folder_name}')\"",
        "```",
        "",
    ]
    return "\n".join(lines)
