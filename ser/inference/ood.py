"""How unlike the training data a recording is: an out-of-distribution (OOD) score and threshold.

The score of a clip is a distance of its features to the validation clips' feature statistics:
each clip's front-end features ``(n_features, F)`` are summarised by the mean and the standard
deviation of every feature bin over the valid frames (``2 * n_features`` numbers: the clip's
spectral shape and how much each band moves), every number is turned into a z-score against the
validation clips' mean and standard deviation of it, and the score is the root mean square of those
z-scores (a Mahalanobis distance with a diagonal covariance). 1 is a typical validation clip; a
recording from another microphone, room, language or no speech at all lies further away.

The threshold is the score below which ``accept`` (95 %) of the validation clips fall; a recording
whose mean window score exceeds it is marked "unlike the training data". Statistics and threshold
are plain data in the checkpoint's spec (:data:`OOD_KEY`), fitted with the temperature after fit
(:mod:`ser.calibration`), so model folders carry them and ``ser test --recalibrate true`` adds them
to an older checkpoint. ``docs/trust.md`` gives the measurements behind the choice of this score.

Lightning-free: ``ser predict`` imports it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from ser.errors import SERError
from ser.spec import OOD_KEY

__all__ = ["ACCEPT", "MIN_STD", "OOD_KEY", "UNLIKE", "OODStats", "feature_summary", "fit_ood"]
#: The share of in-distribution (validation) clips the default threshold accepts.
ACCEPT = 0.95
#: Keeps the z-score of a feature number that never varies across the validation clips finite.
MIN_STD = 1e-3
#: What ``ser predict`` says of a recording above the threshold.
UNLIKE = "unlike the training data"


def feature_summary(features: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Per clip, the mean and standard deviation of each feature bin over its valid frames.

    Shapes: ``(B, n_features, F), (B,) -> (B, 2 * n_features)``.
    """
    features = features.float()
    frames = torch.arange(features.shape[-1], device=features.device)
    mask = (frames < lengths[:, None]).to(features.dtype)[:, None, :]  # (B, 1, F)
    count = mask.sum(dim=-1).clamp(min=1)  # (B, 1)
    mean = (features * mask).sum(dim=-1) / count  # (B, n_features)
    var = (((features - mean[..., None]) * mask) ** 2).sum(dim=-1) / count  # (B, n_features)
    return torch.cat([mean, var.sqrt()], dim=1)  # (B, 2 * n_features)


@dataclass
class OODStats:
    """The validation clips' feature statistics and the score threshold.

    Args:
        mean: ``2 * n_features`` means of the validation clips' feature summaries.
        std: their standard deviations (floored at :data:`MIN_STD`).
        threshold: scores above it are marked unlike the training data.
        accept: the share of validation clips at or below ``threshold``.
        n_clips: validation clips the statistics come from.
    """

    mean: list[float]
    std: list[float]
    threshold: float
    accept: float = ACCEPT
    n_clips: int = 0

    def score(self, summary: torch.Tensor) -> torch.Tensor:
        """The OOD score of clips from their :func:`feature_summary`: ``(N, D) -> (N,)``."""
        mean = torch.tensor(self.mean, dtype=summary.dtype, device=summary.device)
        std = torch.tensor(self.std, dtype=summary.dtype, device=summary.device)
        if summary.shape[-1] != len(mean):
            raise SERError(
                f"OOD statistics of {len(mean)} feature numbers, the model's features give "
                f"{summary.shape[-1]}: the checkpoint's 'ood' entry does not fit its front-end"
            )
        return ((summary - mean) / std).pow(2).mean(dim=-1).sqrt()  # (N,)

    def to_spec(self) -> dict:
        return asdict(self)

    @classmethod
    def from_spec(cls, spec: dict | None) -> OODStats | None:
        """The statistics of a spec's :data:`OOD_KEY` entry, as :func:`ser.spec.check_spec` (or
        :func:`ser.spec.check_info`) checked it; ``None`` when it has none."""
        entry = (spec or {}).get(OOD_KEY)
        return None if entry is None else cls(**entry)


def fit_ood(summary: torch.Tensor, accept: float = ACCEPT) -> OODStats:
    """Statistics and threshold from the validation clips' :func:`feature_summary` ``(N, D)``.

    The threshold is the ``accept`` quantile of the validation clips' own scores.

    Raises:
        SERError: fewer than two clips (no spread to measure) or ``accept`` outside (0, 1].
    """
    if not 0 < accept <= 1:
        raise SERError(f"OOD accept share {accept} must be in (0, 1]")
    if len(summary) < 2:
        raise SERError(
            f"the OOD statistics need at least 2 validation clips, the split holds {len(summary)}"
        )
    summary = summary.double()
    stats = OODStats(
        mean=summary.mean(dim=0).tolist(),
        std=summary.std(dim=0).clamp(min=MIN_STD).tolist(),
        threshold=0.0,
        accept=accept,
        n_clips=len(summary),
    )
    stats.threshold = float(torch.quantile(stats.score(summary), accept))
    return stats
