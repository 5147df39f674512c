"""Domain-adversarial training (Ganin et al. 2016): a small classifier learns to tell the training
clips' domains - their speaker or their corpus - from the net's embedding, and the gradient that
reaches the net through a gradient-reversal layer is turned around, so the net learns an embedding
in which emotions stay apart and domains do not.

The embedding is what the net's last linear layer reads, taken with a forward hook: any net whose
logits come from a final ``nn.Linear`` takes part unchanged.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ser.errors import SERError


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, strength: float) -> torch.Tensor:
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.strength * grad, None


def reverse_gradient(x: torch.Tensor, strength: float) -> torch.Tensor:
    """Identity forward; the gradient times ``-strength`` backward."""
    return _Reverse.apply(x, strength)


def last_linear(net: nn.Module) -> nn.Linear:
    layers = [m for m in net.modules() if isinstance(m, nn.Linear)]
    if not layers:
        raise SERError(
            f"--model.adversary: {type(net).__name__} has no final linear layer whose input "
            "could serve as the embedding"
        )
    return layers[-1]


class DomainAdversary(nn.Module):
    """A domain classifier behind a gradient-reversal layer.

    Args:
        domain: what the adversary tells apart: each training clip's ``speaker`` or ``corpus``
            (a pool's corpora, :class:`ser.data.Pooled`).
        weight: the largest strength of the reversed gradient (and the weight of the domain loss).
        hidden: width of the adversary's hidden layer.
        max_domains: the most domains it can tell apart (its output size).

    The strength grows from 0 to ``weight`` over training as ``2 / (1 + exp(-10 p)) - 1`` of the
    progress ``p`` (Ganin et al.), so the emotion classifier settles before it is pushed.
    """

    def __init__(
        self,
        domain: Literal["speaker", "corpus"] = "speaker",
        weight: float = 0.3,
        hidden: int = 128,
        max_domains: int = 256,
    ) -> None:
        super().__init__()
        if domain not in ("speaker", "corpus") or not weight > 0 or hidden < 1 or max_domains < 2:
            raise SERError(
                f"--model.adversary: domain ({domain!r}) must be speaker or corpus, weight "
                f"({weight}) > 0, hidden ({hidden}) >= 1 and max_domains ({max_domains}) >= 2"
            )
        self.domain, self.weight, self.max_domains = domain, float(weight), max_domains
        self.hidden = hidden
        #: The domain classifier, built for the net's embedding size by :meth:`build`.
        self.head: nn.Module | None = None
        #: Domain name -> class index, from the training split (:meth:`set_domains`).
        self.index: dict[str, int] = {}

    def build(self, embedding_size: int) -> None:
        """Make the domain classifier for embeddings of ``embedding_size``."""
        self.head = nn.Sequential(
            nn.Linear(embedding_size, self.hidden), nn.ReLU(inplace=True),
            nn.Linear(self.hidden, self.max_domains),
        )  # fmt: skip

    def set_domains(self, names: list[str]) -> None:
        names = sorted(set(names))
        if len(names) < 2:
            raise SERError(
                f"--model.adversary.domain {self.domain}: the training split holds "
                f"{len(names)} {self.domain}; it needs two or more to tell apart"
                + (" (pool corpora with --data configs/data/pooled.yaml)"
                   if self.domain == "corpus" else "")
            )  # fmt: skip
        if len(names) > self.max_domains:
            raise SERError(
                f"--model.adversary: {len(names)} training {self.domain}s, more than "
                f"max_domains ({self.max_domains}); raise --model.adversary.max_domains"
            )
        self.index = {name: i for i, name in enumerate(names)}

    def strength(self, progress: float) -> float:
        return self.weight * (2.0 / (1.0 + math.exp(-10.0 * min(max(progress, 0.0), 1.0))) - 1.0)

    def loss(
        self, embedding: torch.Tensor, batch: dict, progress: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The domain cross-entropy of a training batch's ``embedding`` ``(B, D)`` and its
        accuracy; the net receives the gradient reversed at ``progress``'s strength."""
        names = batch["speaker" if self.domain == "speaker" else "corpus"]
        target = torch.tensor([self.index.get(n, -100) for n in names], device=embedding.device)
        logits = self.head(reverse_gradient(embedding.float(), self.strength(progress)))
        known = target >= 0
        if not known.any():
            return embedding.sum() * 0.0, torch.zeros((), device=embedding.device)
        loss = F.cross_entropy(logits, target, ignore_index=-100)
        accuracy = (logits.argmax(-1) == target)[known].float().mean()
        return loss, accuracy
