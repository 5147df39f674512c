"""``ser predict --group-by folder``: recordings normalised by the statistics of their group.

A model trained with speaker (or corpus) normalisation (``--data.normalization speaker``) sees
each clip's features relative to its speaker's usual voice. At inference the speaker of a file is
unknown, so each window is normalised on its own - unless the user groups the files: with
``--group-by folder`` the files of one folder are taken as one speaker, their statistics are
computed over all of them (whole recordings, as the data computes a speaker's) and every window
of those files is normalised by them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

from ser.audio import read_audio
from ser.errors import AudioError, SERError

log = logging.getLogger("ser")

GROUPINGS = ("none", "folder")


def group_by_folder(paths: list[Path]) -> dict[Path, list[Path]]:
    """The files of each folder, folders in the order their first file is given."""
    groups: dict[Path, list[Path]] = {}
    for path in paths:
        groups.setdefault(path.parent, []).append(path)
    return groups


def predict_grouped(model, paths: list[Path], predict: Callable[[list[Path]], list]) -> list:
    """``predict(files)`` for each folder's files with the model's normalisation set to that
    folder's statistics; the predictions in the order of ``paths``' folders."""
    normalization = getattr(getattr(model, "pipeline", None), "normalization", None)
    if normalization is None or normalization.level == "recording":
        raise SERError(
            "--group-by folder: the model normalises each recording on its own (or not at all); "
            "it applies to models trained with --data.normalization speaker or corpus"
        )
    pipeline = model.pipeline
    predictions = []
    try:
        for folder, files in group_by_folder(paths).items():
            waves = []
            for path in files:
                try:
                    waves.append(model.recording(read_audio(path, model.sample_rate)))
                except AudioError as err:  # predict skips it with its own warning
                    log.debug("not in %s's statistics: %s", folder, err)
            if waves:
                pipeline.fit_normalization(waves, [str(folder)] * len(waves), population=False)
                normalization.shared_group = str(folder)
                log.info("%s: %d recordings normalised by their folder's statistics", folder,
                         len(waves))  # fmt: skip
            predictions += predict(files)
    finally:
        normalization.shared_group = None
    return predictions
