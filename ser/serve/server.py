"""``ser serve MODEL``: build the LitServe server (workers, batching, limits, key, page, live
endpoint) and run it until SIGTERM or Ctrl+C, finishing the requests in flight."""

from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import logging
import os
import signal
from dataclasses import asdict

from ser.errors import SERError
from ser.inference.models import (
    EmotionModel,
    Ensemble,
    add_encoder_weights,
    load_models,
    model_info,
)

log = logging.getLogger("ser")

SERVE_HINT = "ser serve needs the serve extra: pip install 'ser[serve]' (LitServe)"
#: Where a key can come from instead of the command line (which other users may see).
KEY_ENV = "SER_API_KEY"
#: The hosts LitServe binds: this machine only, or every interface (IPv4, IPv6).
HOSTS = ("127.0.0.1", "0.0.0.0", "::")


def describe(model, paths: list[str]) -> dict:
    """What ``GET /info`` says of the model: classes, rate, front-end, net, calibration."""
    members = model.members if isinstance(model, Ensemble) else [model]
    info = {**model_info(model), "models": [os.path.basename(os.path.normpath(p)) for p in paths]}
    info["members"] = []
    for member in members:
        if isinstance(member, EmotionModel):
            info["members"].append({
                "kind": "checkpoint", "frontend": member.pipeline.spec["frontend"],
                "net": f"{type(member.net).__module__}.{type(member.net).__name__}",
                "temperature": member.temperature,
            })  # fmt: skip
        else:
            info["members"].append({"kind": "torchscript"})
    return info


def check_host(host: str, api_key: str | None) -> None:
    """Refuse a host LitServe cannot bind, and serving other machines without a key."""
    if host not in HOSTS:
        raise SERError(f"--host {host}: use 127.0.0.1 (this machine only, the default), or 0.0.0.0 "
                       "/ :: (every interface, with --api-key)")  # fmt: skip
    if not ipaddress.ip_address(host).is_loopback and not api_key:
        raise SERError(f"--host {host} lets other machines in: give --api-key KEY (or set "
                       f"{KEY_ENV}); clients send it as X-API-Key: KEY")  # fmt: skip


def build_server(args: argparse.Namespace):
    """The :class:`litserve.LitServer` of ``args`` (see :func:`build_parser`), with the page, the
    live endpoint and JSON errors added to LitServe's app."""
    import litserve as ls
    from fastapi.responses import JSONResponse
    from starlette.exceptions import HTTPException

    from ser.serve.answers import Limits
    from ser.serve.endpoints import PREDICT_OPENAPI, AudioSpec, page_file
    from ser.serve.worker import EmotionAPI

    paths = [args.model, *args.ensemble]
    # here first: a bad model is one clear error before any worker
    model = load_models(paths, args.encoder_weights)
    limits = Limits(args.max_bytes, args.max_seconds, args.timeout, args.max_queue)
    spec = AudioSpec(limits, model.sample_rate, model.decode_denoise is None, args.api_key)
    api = EmotionAPI(paths, limits, args.api_key, args.batch_size, args.max_batch_size,
                     args.batch_timeout, spec, args.encoder_weights)  # fmt: skip
    info = {**describe(model, paths), "limits": asdict(limits)}
    server = ls.LitServer(
        api, accelerator=args.device, devices=1, workers_per_device=args.workers,
        timeout=args.timeout, model_metadata=info,
    )  # fmt: skip
    app = server.app
    for route in app.router.routes:
        if getattr(route, "path", None) == "/predict":
            route.openapi_extra = PREDICT_OPENAPI
    app.router.routes = [r for r in app.router.routes if getattr(r, "path", None) != "/"]
    app.add_api_route(
        "/", lambda: page_file("index.html"), methods=["GET"], include_in_schema=False
    )
    app.add_api_route("/page/{name}", page_file, methods=["GET"], include_in_schema=False)
    app.add_api_websocket_route("/live", spec.live)

    async def json_error(request, exc: HTTPException) -> JSONResponse:
        return JSONResponse({"error": exc.detail}, exc.status_code, headers=exc.headers)

    app.add_exception_handler(HTTPException, json_error)
    return server


def positive(kind):
    def parse(text: str):
        value = kind(text)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text}: must be positive")
        return value

    return parse


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ser serve",
        description="Serve a model over HTTP (LitServe): POST /predict, GET /health, GET /info, "
        "the page at /, the live microphone at /live (WebSocket), the API docs at /docs.",
    )
    parser.add_argument("model", help="what `ser predict` takes: a checkpoint, a model.ts or a "
                        "model folder from `ser export`")  # fmt: skip
    parser.add_argument("--ensemble", action="append", default=[], metavar="MODEL",
                        help="average with this model too (repeat for more)")  # fmt: skip
    parser.add_argument("--host", default="127.0.0.1",
                        help="127.0.0.1 (default: this machine only), or 0.0.0.0 / :: (every "
                        "interface; needs --api-key)")  # fmt: skip
    parser.add_argument("--port", type=int, default=8000, help="default 8000")
    parser.add_argument("--api-key", default=os.environ.get(KEY_ENV),
                        help=f"the key clients send as X-API-Key (default: ${KEY_ENV})")  # fmt: skip
    parser.add_argument("--workers", type=positive(int), default=1,
                        help="inference workers, each with its own copy of the model (default 1)")  # fmt: skip
    parser.add_argument("--max-batch-size", type=positive(int), default=8,
                        help="requests answered together, their windows in shared forward passes "
                        "(default 8; 1: no batching)")  # fmt: skip
    parser.add_argument("--batch-timeout", type=float, default=0.01,
                        help="seconds to wait to fill a batch (default 0.01)")  # fmt: skip
    parser.add_argument("--batch-size", type=positive(int), default=16,
                        help="windows per forward pass (default 16)")  # fmt: skip
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--max-bytes", type=positive(int), default=50 * 2**20,
                        help="largest upload in bytes (default 50 MiB); larger: 413")  # fmt: skip
    parser.add_argument("--max-seconds", type=positive(float), default=600.0,
                        help="longest recording or live session in s (default 600); longer: 413")  # fmt: skip
    parser.add_argument("--timeout", type=positive(float), default=60.0,
                        help="seconds a request may take (default 60); longer: 504")  # fmt: skip
    parser.add_argument("--max-queue", type=positive(int), default=128,
                        help="requests held at once (default 128); more: 503 with Retry-After")  # fmt: skip
    add_encoder_weights(parser)
    return parser


def run(args: argparse.Namespace) -> None:
    if importlib.util.find_spec("litserve") is None:
        raise SERError(SERVE_HINT)
    check_host(args.host, args.api_key)
    if not 1024 <= args.port <= 65535:
        raise SERError(f"--port {args.port}: use a port from 1024 to 65535")
    if args.batch_timeout < 0 or args.batch_timeout >= args.timeout:
        raise SERError(f"--batch-timeout {args.batch_timeout}: use 0 or more, below --timeout")
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SERError("--device cuda: no CUDA device is available; use --device cpu")
    server = build_server(args)

    def stop(signum, frame):  # LitServe's own shutdown: in-flight requests finish first
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    where = f"http://{'[::1]' if args.host == '::' else args.host}:{args.port}"
    print(f"ser serve: the page at {where}/ ; POST {where}/predict ; API docs at {where}/docs",
          flush=True)  # fmt: skip
    server.run(host=args.host, port=args.port, generate_client_file=False, log_level="warning")


def main(argv: list[str] | None = None) -> None:
    run(build_parser().parse_args(argv))
