"""The HTTP side of ``ser serve`` (run in LitServe's API processes): ``POST /predict`` (an upload,
raw or multipart), the live ``/live`` WebSocket, and the page at ``/``.

Requests reach the inference workers through LitServe's request queue (so LitServe batches them)
and come back through its response buffer; each answer is a status and a JSON body
(:mod:`ser.serve.answers`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from importlib import resources

import numpy as np
import torch
from fastapi import Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response
from litserve.specs.base import LitSpec
from litserve.utils import LitAPIStatus, ResponseBufferItem
from starlette.datastructures import UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from ser.audio import HOP_SECONDS, WINDOW_SECONDS, Windower
from ser.serve.answers import (
    Limits,
    RequestError,
    clips_payload,
    parse_options,
    upload,
)
from ser.serve.worker import key_matches

log = logging.getLogger("ser")

#: Bytes a multipart request may add around its file (boundaries, headers, option fields).
MULTIPART_SLACK = 64 * 1024
#: Seconds a client is told to wait when the queue is full.
RETRY_AFTER = 1
#: The page's files (package data), by URL name.
PAGE_FILES = {"index.html": "text/html", "app.js": "text/javascript", "style.css": "text/css"}


def error_response(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class AudioSpec(LitSpec):
    """``POST /predict`` and ``/live`` on LitServe's queue, with the limits of :class:`Limits`.

    Args:
        limits: upload size, duration, timeout and queue bound.
        sample_rate: the model's rate (live chunks must come at it).
        live: whether the model can score a live stream (not with decode-time noise reduction,
            which needs the whole recording).
        api_key: what ``/live`` checks (LitServe checks it for the other endpoints).
    """

    def __init__(self, limits: Limits, sample_rate: int, live: bool = True,
                 api_key: str | None = None) -> None:  # fmt: skip
        super().__init__()
        self.api_path = "/predict"
        self.limits, self.sample_rate, self.live_ok, self.api_key = (
            limits,
            sample_rate,
            live,
            api_key,
        )
        self.in_flight = 0
        self.add_endpoint("/predict", self.predict, ["POST"])

    def decode_request(self, request, context_kwargs=None):
        return request

    def encode_response(self, output, context_kwargs=None):
        return output

    async def submit(self, payload: dict) -> dict:
        """Put ``payload`` on the workers' queue; its answer, within the timeout.

        Raises:
            RequestError: 503 when this process holds ``max_queue`` requests, 504 on timeout.
        """
        if self.in_flight >= self.limits.max_queue:
            raise RequestError(503, f"the server holds {self.limits.max_queue} requests; retry "
                                    f"in {RETRY_AFTER} s")  # fmt: skip
        self.in_flight += 1
        uid = str(uuid.uuid4())
        event = asyncio.Event()
        self.response_buffer[uid] = ResponseBufferItem(event=event)
        try:
            self.request_queue.put((self.response_queue_id, uid, time.monotonic(), payload))
            try:
                await asyncio.wait_for(event.wait(), self.limits.timeout)
            except TimeoutError:
                raise RequestError(504, f"no answer within {self.limits.timeout:g} s; send a "
                                        "shorter recording or retry later") from None  # fmt: skip
            response, status = self.response_buffer[uid].response
        finally:
            self.response_buffer.pop(uid, None)
            self.in_flight -= 1
        if status == LitAPIStatus.ERROR:
            code = getattr(response, "status_code", 500)
            if code == 504:
                raise RequestError(504, "the request waited too long in the queue; retry later")
            log.error("the worker failed on a request: %r", response)
            raise RequestError(500, "the model failed on this request (the server log says why)")
        return response

    async def predict(self, request: Request) -> Response:
        """``POST /predict``: an audio file as the body (``?name=clip.wav``) or as the multipart
        field ``file``; options ``window``, ``hop``, ``per_window``, ``top_k``, ``segments`` as
        query or form fields. The answer: ``ser predict``'s result as JSON."""
        try:
            data, name, fields = await read_upload(request, self.limits.max_bytes)
            options = parse_options({**dict(request.query_params), **fields})
            result = await self.submit(upload(data, name or fields.get("name"), options))
        except RequestError as err:
            headers = {"Retry-After": str(RETRY_AFTER)} if err.status == 503 else None
            return error_response(err.status, str(err), headers)
        if result["status"] != 200:
            return error_response(result["status"], result["error"])
        return JSONResponse(result["body"])

    async def live(self, websocket: WebSocket) -> None:
        """``/live``: the page's microphone as it records. The client sends a JSON start message
        (``{"sample_rate": the model's rate, "window": s, "hop": s, "key": ...}``), then float32
        little-endian mono samples at that rate; after each hop it gets the window's emotion and
        the running one (the mean of the windows so far, as a file's result is)."""
        await websocket.accept()
        try:
            start = json.loads(await websocket.receive_text())
            windower, hop = self._live_start(start)
            await websocket.send_json({"ready": True, "window": windower.window / self.sample_rate,
                                       "hop": hop})  # fmt: skip
            total, n_samples = None, 0
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message.get("text") is not None:  # {"end": true}: the recording stopped
                    return await websocket.close()
                data = message.get("bytes") or b""
                if len(data) % 4:
                    raise RequestError(400, "send float32 samples: chunks of whole 4-byte samples")
                chunk = np.frombuffer(data, dtype="<f4")
                if not np.isfinite(chunk).all():
                    raise RequestError(422, "the audio holds NaN or infinite samples")
                n_samples += len(chunk)
                if n_samples > self.limits.max_seconds * self.sample_rate:
                    raise RequestError(413, f"a live session is at most "
                                            f"{self.limits.max_seconds:g} s")  # fmt: skip
                windows = windower.push(torch.from_numpy(chunk.copy()))
                if not windows:
                    continue
                result = await self.submit(clips_payload([c.numpy() for *_, c in windows]))
                if result["status"] != 200:
                    raise RequestError(result["status"], result["error"])
                for (s, e, _), probs in zip(windows, result["probabilities"], strict=True):
                    probs = np.asarray(probs)
                    total = probs if total is None else total + probs
                    await websocket.send_json({
                        "start": s / self.sample_rate, "end": e / self.sample_rate,
                        "probabilities": probs.tolist(), "running": (total / total.sum()).tolist(),
                    })  # fmt: skip
        except WebSocketDisconnect:
            return
        except RequestError as err:
            await websocket.send_json({"error": str(err), "status": err.status})
            await websocket.close(code=1008 if err.status == 401 else 1003)
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            await websocket.send_json({"error": "start with a JSON message: {\"sample_rate\": "
                                       f"{self.sample_rate}, \"window\": s, \"hop\": s}}"})  # fmt: skip
            await websocket.close(code=1003)

    def _live_start(self, start: dict) -> tuple[Windower, float]:
        if self.api_key is not None and not key_matches(start.get("key"), self.api_key):
            raise RequestError(401, 'this server needs its API key: send it as "key"')
        if not self.live_ok:
            raise RequestError(400, "this model reduces noise over whole recordings, so it cannot "
                                    "score a live stream; send a recording to /predict")  # fmt: skip
        if int(start.get("sample_rate", 0)) != self.sample_rate:
            raise RequestError(400, f"send the samples at the model's {self.sample_rate} Hz "
                                    f"(sample_rate {start.get('sample_rate')!r})")  # fmt: skip
        options = parse_options({k: str(start[k]) for k in ("window", "hop") if k in start})
        window = options.window if "window" in start else WINDOW_SECONDS
        hop = options.hop if "hop" in start else HOP_SECONDS
        return Windower(self.sample_rate, window, hop), hop


async def read_upload(request: Request, max_bytes: int) -> tuple[bytes, str | None, dict]:
    """The audio of a ``POST /predict``, its file name and the form's other fields; the body is
    read only up to the limit.

    Raises:
        RequestError: 413 over ``max_bytes``; 400 for no audio or a malformed form.
    """
    too_large = RequestError(413, f"the upload is larger than this server's limit of {max_bytes} "
                                  "bytes")  # fmt: skip
    cap = max_bytes + MULTIPART_SLACK
    length = request.headers.get("content-length", "")
    if length.isdigit() and int(length) > cap:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > cap:
            raise too_large
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        if len(body) > max_bytes:
            raise too_large
        return bytes(body), request.query_params.get("name"), {}

    async def once():
        yield bytes(body)

    try:
        form = await MultiPartParser(request.headers, once(), max_files=1, max_fields=20).parse()
    except MultiPartException as err:
        raise RequestError(400, f"a malformed multipart form ({err})") from None
    files = [v for v in form.values() if isinstance(v, UploadFile)]
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if not files:
        raise RequestError(400, "no audio in the form: send the recording as the field 'file'")
    data = await files[0].read()
    if len(data) > max_bytes:
        raise too_large
    return data, files[0].filename, fields


#: ``POST /predict`` in the OpenAPI schema (``/docs``): the body and the options.
PREDICT_OPENAPI = {
    "parameters": [
        {"name": name, "in": "query", "required": False, "schema": {"type": kind},
         "description": what}
        for name, kind, what in (
            ("name", "string", "the file's name, for the answer (raw body)"),
            ("window", "number", f"window length in s (default {WINDOW_SECONDS:g})"),
            ("hop", "number", f"step between windows in s (default {HOP_SECONDS:g})"),
            ("per_window", "boolean", "also answer every window"),
            ("top_k", "integer", "classes listed in top_k (default 3)"),
            ("segments", "string", "windows (default) or vad"),
        )
    ],
    "requestBody": {"required": True, "content": {
        "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
        "multipart/form-data": {"schema": {"type": "object", "required": ["file"], "properties": {
            "file": {"type": "string", "format": "binary"}}}},
    }},
}  # fmt: skip


def page_file(name: str) -> Response:
    """A file of the page (package data), or 404."""
    if name not in PAGE_FILES:
        return error_response(404, f"no page file {name!r}")
    text = resources.files("ser.serve").joinpath("page", name).read_text()
    return Response(text, media_type=PAGE_FILES[name])
