"""The LitServe API run in each inference worker: load the model once, answer batches."""

from __future__ import annotations

import hmac

import litserve as ls
from fastapi import HTTPException, Request

from ser.inference.models import load_models
from ser.serve.answers import Limits, answer

#: Headers that carry the API key: ``X-API-Key: KEY`` or ``Authorization: Bearer KEY``.
KEY_HEADER = "X-API-Key"


def key_matches(given: str | None, key: str) -> bool:
    """Whether ``given`` is ``key``, compared in constant time."""
    return given is not None and hmac.compare_digest(given.encode(), key.encode())


def request_key(request: Request) -> str | None:
    """The key a request presents, if any."""
    given = request.headers.get(KEY_HEADER)
    if given is None:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        given = token if scheme.lower() == "bearer" and token else None
    return given


class EmotionAPI(ls.LitAPI):
    """The model behind LitServe: ``setup`` loads it as ``ser predict`` does; ``predict`` answers
    a batch of payloads (:mod:`ser.serve.answers`), whose windows share forward passes.

    Args:
        models: what ``ser predict`` takes: a checkpoint, a TorchScript export, a model folder,
            or several (an ensemble).
        limits: what a request may hold.
        api_key: every request but the page must present it (``None``: none needed).
        batch_size: windows per forward pass.
        max_batch_size: requests answered together (LitServe's batching; 1: one at a time).
        batch_timeout: seconds LitServe waits to fill a batch.
        spec: the HTTP endpoints (:class:`ser.serve.endpoints.AudioSpec`).
        encoder_weights: the encoder weights file the user named (``--encoder-weights``).
    """

    def __init__(self, models: list[str], limits: Limits, api_key: str | None = None,
                 batch_size: int = 16, max_batch_size: int = 1, batch_timeout: float = 0.0,
                 spec: ls.specs.base.LitSpec | None = None,
                 encoder_weights: str | None = None) -> None:  # fmt: skip
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, spec=spec)
        self.models, self.limits, self.api_key = list(models), limits, api_key
        self.encoder_weights = encoder_weights
        self.batch_size = batch_size

    def setup(self, device: str) -> None:
        self.device = device  # LitServe's: "cpu" or "cuda:N"
        self.model = load_models(self.models, self.encoder_weights).to(self.device).eval()

    def decode_request(self, request: dict) -> dict:
        return request  # the endpoint built the payload; errors travel as answers, not exceptions

    def batch(self, inputs: list[dict]) -> list[dict]:
        return inputs

    def predict(self, x: dict | list[dict]) -> dict | list[dict]:
        many = isinstance(x, list)
        answers = answer(self.model, x if many else [x], self.limits, self.device, self.batch_size)
        return answers if many else answers[0]

    def unbatch(self, output: list[dict]) -> list[dict]:
        return output

    def encode_response(self, output: dict) -> dict:
        return output

    def authorize(self, request: Request) -> None:
        """LitServe's hook for every endpoint it serves: 401 without the key."""
        if self.api_key is not None and not key_matches(request_key(request), self.api_key):
            raise HTTPException(401, f"this server needs its API key: send it as {KEY_HEADER}: KEY")
