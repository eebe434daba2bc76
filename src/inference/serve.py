"""An HTTP service and a web page for a trained model directory.

    python -m src.inference.serve --model-dir models [--host 127.0.0.1] [--port 8000]

``POST /predict`` with ``{"texts": [...], "explain": false}`` answers ``{"predictions": [...]}``, in
input order, each what ``predict_batch`` returns (``explain``: what ``explain`` returns, the words'
contributions included). ``GET /health`` and ``GET /metadata`` describe the service and the model,
``/docs`` is the OpenAPI page, and ``/`` a page to try a review on. Requests that arrive within a
few milliseconds are classified in one model call (``src.inference.batching``). Every error is a
JSON object ``{"error": "..."}``. docs/serving.md describes the API, its limits and the security
settings (``--api-key``, the Content-Security-Policy).
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import ipaddress
import json
import logging
import math
import os
import socket
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Dict, List, Optional, Sequence, Tuple, Union

import torch
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException

from src.exceptions import ExplanationRefused, PipelineError
from src.inference.batching import BatchFailed, MicroBatcher, Overloaded, model_executor
from src.inference.explain import DEFAULT_STEPS as EXPLAIN_COST
from src.inference.predictor import Predictor, add_runtime_arguments, load_predictor
from src.models.model_dir import CARD_FILE, CONFIG_FILE, METRICS_FILE
from src.utils.cli import OneLineParser, fail

logger = logging.getLogger(__name__)

API_KEY_ENV = "LSTM_SENTIMENT_API_KEY"
STATIC_DIR = Path(__file__).resolve().parent / "static"  # shipped in the package (pyproject package-data)
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000
DEFAULT_BATCH_WAIT_MS, DEFAULT_MAX_BATCH = 0.0, 64  # measured with bench/serve.py (bench/README.md)
# A call's texts arrive in no order of length: sorted and cut into batches of 4, they carry far less padding
# (bench/serve.py: 0.62-0.74 of in-process speed against 0.47-0.51 with 64, default sizes, ONNX Runtime)
SERVE_BATCH_SIZE = 4
MAX_CARD_BYTES = 256 * 1024  # of MODEL_CARD.md shown by /metadata; a longer card is cut there
# Where the training run's files were on its machine: not the service's to tell its clients.
PRIVATE_SETTINGS = ("data_dir", "train_file", "validation_file", "test_file", "unlabeled", "glove_cache_dir",
                    "output_dir", "checkpoint_dir", "resume")

PAGE_CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; object-src 'none'; "
            "base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# FastAPI's Swagger page loads its script and style from a CDN and starts them with an inline script.
DOCS_PATHS = ("/docs", "/docs/oauth2-redirect")
DOCS_CSP = ("default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
            "img-src 'self' data: https://fastapi.tiangolo.com; "
            "object-src 'none'; base-uri 'none'; frame-ancestors 'none'")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")  # what a browser on this machine sends as Host
MODEL_FAILED = "the model failed on this request; the server's log says why"
SECURITY_HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}

PREDICT_SCHEMA = {
    "required": True,
    "content": {"application/json": {"schema": {
        "type": "object", "required": ["texts"], "additionalProperties": False,
        "properties": {"texts": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                       "explain": {"type": "boolean", "default": False}}},
        "example": {"texts": ["A wonderful, moving film.", "Two hours I will never get back."]}}}}


@dataclass(frozen=True)
class Limits:
    """What one ``/predict`` request may hold."""

    max_texts: int = 64
    max_text_chars: int = 100_000
    max_body_bytes: int = 2 * 1024 * 1024
    # an explanation runs the model dozens of times (integrated gradients), and holds it meanwhile
    max_explain_texts: int = 8
    # texts of all requests not yet answered, an explained one counting as EXPLAIN_COST (its integrated
    # gradients' model passes); beyond it a request gets 503 at once (about 8 s of the blended model's work
    # served on 2 cores: docs/serving.md)
    max_queued_texts: int = 1024

    def __post_init__(self) -> None:
        largest = max(self.max_texts, self.max_explain_texts * EXPLAIN_COST)
        if self.max_queued_texts < largest:
            raise ValueError(f"--max-queued-texts ({self.max_queued_texts}) must be at least {largest}, the most "
                             f"one request may hold (--max-texts {self.max_texts}, or --max-explain-texts "
                             f"{self.max_explain_texts} counting {EXPLAIN_COST} each): a full request would never "
                             "be taken")


class RequestError(Exception):
    """A request the service refuses: the HTTP status and a message that says what to change."""

    def __init__(self, status: int, message: str, headers: Optional[Dict[str, str]] = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers


# -- requests -------------------------------------------------------------------------------------------------

def check_content_type(content_type: Optional[str]) -> None:
    """Only JSON (UTF-8) is read; this also keeps other sites' plain form posts out."""
    media, _, parameters = (content_type or "").partition(";")
    charset = parameters.strip().lower().replace(" ", "").replace('"', "")  # charset="utf-8" is the same
    if media.strip().lower() != "application/json" or charset not in ("", "charset=utf-8"):
        raise RequestError(415, f"the body must be JSON sent with Content-Type: application/json, "
                                f"not {content_type or 'no Content-Type'}")


async def read_body(request: Request, limit: int) -> bytes:
    """The request's body, refused (413) as soon as its declared or actual size passes ``limit``."""
    declared = request.headers.get("content-length")
    too_large = f"the body is larger than this server's limit of {limit} bytes; send fewer or shorter texts"
    if declared is not None and declared.isdigit() and int(declared) > limit:  # the server checked its form
        raise RequestError(413, too_large)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(413, too_large)
        chunks.append(chunk)
    return b"".join(chunks)


def parse_predict_request(body: bytes, limits: Limits) -> Tuple[List[str], bool]:
    """``(texts, explain)`` from a ``/predict`` body, or a RequestError that names what is wrong."""
    try:
        payload = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError:
        raise RequestError(400, "the body is not UTF-8 text") from None
    except (ValueError, RecursionError) as err:
        raise RequestError(400, f"the body is not valid JSON ({str(err)[:120]})") from None
    if not isinstance(payload, dict):
        raise RequestError(400, 'the body must be a JSON object: {"texts": ["a review", ...]}')
    unknown = sorted(set(payload) - {"texts", "explain"})
    if unknown:
        raise RequestError(400, f"unknown field {unknown[0][:40]!r}; a request holds \"texts\" and optionally "
                                '"explain"')
    explain = payload.get("explain", False)
    if not isinstance(explain, bool):
        raise RequestError(400, f'"explain" must be true or false, not {json.dumps(explain)[:40]}')
    texts = _checked_texts(payload.get("texts"), limits)
    if explain and len(texts) > limits.max_explain_texts:
        raise RequestError(413, f"{len(texts)} texts to explain in one request; this server explains at most "
                                f"{limits.max_explain_texts} at a time: split them over several requests")
    return texts, explain


def _checked_texts(texts: Any, limits: Limits) -> List[str]:
    if not isinstance(texts, list):
        raise RequestError(400, '"texts" must be a list of strings: {"texts": ["a review", ...]}')
    if not texts:
        raise RequestError(400, '"texts" is empty; send at least one text')
    if len(texts) > limits.max_texts:
        raise RequestError(413, f"{len(texts)} texts in one request; this server takes at most {limits.max_texts}: "
                                "split them over several requests")
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise RequestError(400, f"text {index} is {type(text).__name__ if text is not None else 'null'}, "
                                    "not a string")
        if len(text) > limits.max_text_chars:
            raise RequestError(413, f"text {index} has {len(text)} characters; this server takes at most "
                                    f"{limits.max_text_chars} per text")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError(400, f"text {index} holds an unpaired UTF-16 surrogate, which is not a character; "
                                    "send valid Unicode") from None
    return texts


def check_api_key(authorization: Optional[str], api_key: Optional[str]) -> None:
    """Refuse (401) a request without ``Authorization: Bearer <api_key>`` when the service has a key."""
    if api_key is None:
        return
    scheme, _, given = (authorization or "").partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="lstm-sentiment"'}
    if scheme.lower() != "bearer" or not given.strip():
        raise RequestError(401, "this server needs an API key: send the header Authorization: Bearer <key>", challenge)
    if not hmac.compare_digest(given.strip().encode("utf-8"), api_key.encode("utf-8")):
        raise RequestError(401, "wrong API key", challenge)


# -- what /metadata tells about the model -----------------------------------------------------------------------

def _read_json(path: Path) -> Any:
    """The file's JSON, or None (logged) when it is missing or unreadable: metadata never stops the service."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as err:
        logger.warning("ignoring %s: not readable JSON (%s)", path.name, str(err)[:200])
        return None


def _read_card(path: Path) -> Optional[str]:
    """MODEL_CARD.md as text (undecodable bytes replaced, cut at MAX_CARD_BYTES), or None."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_CARD_BYTES + 1)
    except OSError:
        return None
    text = data[:MAX_CARD_BYTES].decode("utf-8", errors="replace")
    return text + "\n[... cut: the card is longer]" if len(data) > MAX_CARD_BYTES else text


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities (which JSON cannot carry) as None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def directory_metadata(directory: Union[str, Path], vocab_size: Optional[int],
                       temperature: Optional[float] = None) -> Dict[str, Any]:
    """A model directory's settings (less where its files were), test metrics, temperature and model card."""
    directory = Path(directory)
    config, metrics = _read_json(directory / CONFIG_FILE), _read_json(directory / METRICS_FILE)
    metrics = metrics if isinstance(metrics, dict) else {}
    result: Dict[str, Any] = {
        "name": directory.resolve().name,
        "settings": {k: v for k, v in config.items() if k not in PRIVATE_SETTINGS} if isinstance(config, dict) else {},
        "vocab_size": vocab_size,
        "test": metrics["test"] if isinstance(metrics.get("test"), dict) else None,
        "temperature": temperature,
        "model_card": _read_card(directory / CARD_FILE)}
    if isinstance(metrics.get("test_lstm_only"), dict):
        result["test_lstm_only"] = metrics["test_lstm_only"]
    return _finite(result)


def _members(predictor: Predictor) -> List[Any]:
    return list(getattr(predictor, "members", [predictor]))


def service_metadata(predictor: Predictor, model_dirs: Sequence[Union[str, Path]]) -> Dict[str, Any]:
    """What ``/metadata`` answers: one model's fields at the top level; an ensemble's under ``members``."""
    members = _members(predictor)
    described = [directory_metadata(path, getattr(getattr(member, "preprocessor", None), "vocab_size", None),
                                    getattr(member, "temperature", None)) for path, member in zip(model_dirs, members)]
    common = {"class_names": list(predictor.class_names), "runtime": getattr(members[0], "runtime", None),
              "precision": getattr(members[0], "precision", None)}
    return {**common, **described[0]} if len(described) == 1 else {**common, "members": described}


# -- the application ----------------------------------------------------------------------------------------------

def host_name(header: str) -> str:
    """The name of a Host header without its port: "localhost:8000" -> "localhost", "[::1]:8000" -> "[::1]"."""
    header = header.strip().lower()
    return header[: header.index("]") + 1] if header.startswith("[") and "]" in header else header.split(":")[0]


class _Hardening:
    """ASGI middleware: security headers on every response, a JSON 500 (logged) for any unexpected error, and,
    with ``allowed_hosts``, a 400 for a Host header that names another host (a web page that rebinds its own
    name to 127.0.0.1 cannot use a service that listens there)."""

    def __init__(self, app: Any, allowed_hosts: Optional[Sequence[str]] = None):
        self.app, self.allowed_hosts = app, allowed_hosts

    async def __call__(self, scope: Dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.allowed_hosts is not None:
            host = host_name(dict(scope["headers"]).get(b"host", b"").decode("latin-1"))
            if host not in self.allowed_hosts:
                await _error(400, f"this server answers to {', '.join(self.allowed_hosts)}, not to the host "
                                  f"{host[:100]!r}")(scope, receive, send)
                return
        csp = DOCS_CSP if scope["path"] in DOCS_PATHS else PAGE_CSP
        started = False

        async def send_hardened(message: Dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = csp
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
            await send(message)

        try:
            await self.app(scope, receive, send_hardened)
        except Exception:
            logger.exception("%s %s failed", scope.get("method"), scope["path"])
            if started:
                raise
            await _error(500, "internal server error; the server's log says more")(scope, receive, send_hardened)


def _error(status: int, message: str, headers: Optional[Dict[str, str]] = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    path = request.url.path[:200]
    messages = {404: f"no such path: {path} (the API is described at /docs)",
                405: f"{request.method} is not allowed on {path}"}
    return _error(exc.status_code, messages.get(exc.status_code, str(exc.detail)), getattr(exc, "headers", None))


async def _request_error(request: Request, exc: RequestError) -> JSONResponse:
    return _error(exc.status, exc.message, exc.headers)


def create_app(predictor: Predictor, model_dir: Union[str, Path, Sequence[Union[str, Path]]], *,
               limits: Limits = Limits(), api_key: Optional[str] = None,
               batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS, max_batch: int = DEFAULT_MAX_BATCH,
               batch_size: int = SERVE_BATCH_SIZE, model_thread: Optional[ThreadPoolExecutor] = None,
               allowed_hosts: Optional[Sequence[str]] = None) -> FastAPI:
    """The service for ``predictor`` (loaded from ``model_dir``: one directory, or an ensemble's several).

    ``api_key``: ``/predict`` requires ``Authorization: Bearer <api_key>``. Requests are batched
    for up to ``batch_wait_ms`` milliseconds, at most ``max_batch`` texts per model call, run in
    ``model_thread`` (``batching.model_executor()``; pass the one the predictor was loaded in).
    More than ``limits.max_queued_texts`` texts waiting get 503. ``allowed_hosts``: the only Host header
    names answered (``LOOPBACK_NAMES`` for a service on a loopback address); None answers any.
    """
    model_dirs = [model_dir] if isinstance(model_dir, (str, Path)) else list(model_dir)
    metadata = {**service_metadata(predictor, model_dirs), "auth_required": api_key is not None,
                "limits": asdict(limits)}
    batcher = MicroBatcher(functools.partial(predictor.predict_batch, batch_size=batch_size), batch_wait_ms / 1000,
                           max_batch, model_thread, max_queued=limits.max_queued_texts)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="lstm-sentiment", summary="Classify texts with a trained LSTM model directory.",
                  redoc_url=None, lifespan=lifespan)
    app.add_middleware(_Hardening, allowed_hosts=allowed_hosts)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestError, _request_error)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    _add_routes(app, predictor, batcher, metadata, limits, api_key)
    app.state.batcher = batcher
    return app


def _add_routes(app: FastAPI, predictor: Predictor, batcher: MicroBatcher, metadata: Dict[str, Any], limits: Limits,
                api_key: Optional[str]) -> None:
    """The page, ``/health``, ``/metadata`` and ``/predict``."""

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html; charset=utf-8")

    @app.get("/health", summary="Whether the service is up, whether /predict needs a key, and its batch counts")
    async def health() -> Dict[str, Any]:
        return {"status": "ok", "auth_required": metadata["auth_required"], "class_names": metadata["class_names"],
                "runtime": metadata["runtime"], "precision": metadata["precision"], "batches": batcher.batches,
                "texts_classified": batcher.texts, "texts_queued": batcher.queued}

    @app.get("/metadata", summary="The model: settings, class names, vocabulary size, test metrics, model card")
    async def get_metadata() -> Dict[str, Any]:
        return metadata

    @app.post("/predict", summary="Classify texts (with the words' contributions when explain is true)",
              openapi_extra={"requestBody": PREDICT_SCHEMA})
    async def predict(request: Request) -> JSONResponse:
        check_api_key(request.headers.get("authorization"), api_key)
        check_content_type(request.headers.get("content-type"))
        texts, explain = parse_predict_request(await read_body(request, limits.max_body_bytes), limits)
        return await _predictions(predictor, batcher, texts, explain)


async def _predictions(predictor: Predictor, batcher: MicroBatcher, texts: List[str], explain: bool) -> JSONResponse:
    """``/predict``'s answer: the batcher's predictions, or the explanations (run between batches)."""
    try:
        predictions = await (batcher.call(predictor.explain_batch, texts, cost=EXPLAIN_COST * len(texts)) if explain
                             else batcher.submit(texts))
    except Overloaded as err:
        return _error(503, f"the server is busy: {err}; retry in a moment, or start it with a larger "
                           "--max-queued-texts", {"Retry-After": str(err.retry_after_s)})
    except ExplanationRefused as err:  # an ensemble's; the batcher wraps predict's errors
        return _error(400, str(err))
    except BatchFailed:  # logged by the batcher
        return _error(500, MODEL_FAILED)
    except Exception:
        logger.exception("explaining %d texts failed", len(texts))
        return _error(500, MODEL_FAILED)
    return JSONResponse({"predictions": predictions})


# -- the command line -----------------------------------------------------------------------------------------------

def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name: it may well resolve to an outside address


def _allowed_hosts(host: str) -> Optional[Tuple[str, ...]]:
    """The Host names a service on ``host`` answers to: this machine's names when it listens on a loopback
    address (against DNS rebinding); any when other machines may reach it under names it cannot know."""
    return tuple(dict.fromkeys((*LOOPBACK_NAMES, host_name(host)))) if is_loopback(host) else None  # once each


def exposure_warning(host: str, api_key: Optional[str]) -> Optional[str]:
    """The warning for a service other machines can reach without a key; None when there is nothing to say."""
    if api_key is not None or is_loopback(host):
        return None
    return (f"warning: listening on {host}, which other machines may reach, without an API key: anyone who reaches "
            f"it can use the model; pass --api-key (or set {API_KEY_ENV}), or --host 127.0.0.1")


def bind_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (port 0: any free port), before the model loads, so that a port in
    use is reported at once."""
    host = host.strip("[]")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def socket_url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}/" if ":" in host else f"http://{host}:{port}/"


class Server(uvicorn.Server):
    """uvicorn's server that prints where it listens (one line on stderr) once it accepts connections."""

    async def startup(self, sockets: Optional[List[socket.socket]] = None) -> None:
        await super().startup(sockets=sockets)
        if self.started and sockets:
            print(f"serving {socket_url(sockets[0])} (Ctrl+C stops)", file=sys.stderr, flush=True)


def make_server(app: FastAPI, access_log: bool = False, log_level: str = "info") -> Server:
    config = uvicorn.Config(app, log_level=log_level, access_log=access_log, server_header=False,
                            timeout_graceful_shutdown=5)
    return Server(config)


def build_parser(prog: str) -> OneLineParser:
    parser = OneLineParser(prog=prog, description="Serve a trained model over HTTP: an API and a web page.")
    parser.add_argument("--model-dir", required=True, action="append",
                        help="model directory written by training (--output-dir); repeat it to average several models")
    parser.add_argument("--device", default=None, help="cpu, cuda or auto (default: auto)")
    add_runtime_arguments(parser)
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default: {DEFAULT_HOST}, this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"0: any free port (default: {DEFAULT_PORT})")
    parser.add_argument("--api-key", help=f"require Authorization: Bearer KEY on /predict (or set {API_KEY_ENV})")
    parser.add_argument("--max-texts", type=int, default=Limits.max_texts,
                        help=f"texts per request (default: {Limits.max_texts})")
    parser.add_argument("--max-text-chars", type=int, default=Limits.max_text_chars,
                        help=f"characters per text (default: {Limits.max_text_chars})")
    parser.add_argument("--max-body-bytes", type=int, default=Limits.max_body_bytes,
                        help=f"bytes per request body (default: {Limits.max_body_bytes})")
    parser.add_argument("--max-explain-texts", type=int, default=Limits.max_explain_texts,
                        help=f"texts per request with explain (default: {Limits.max_explain_texts})")
    parser.add_argument("--max-queued-texts", type=int, default=Limits.max_queued_texts,
                        help=f"texts of all requests waiting for the model, an explained one counting {EXPLAIN_COST}; "
                             f"more get 503 with Retry-After (default: {Limits.max_queued_texts})")
    parser.add_argument("--batch-wait-ms", type=float, default=DEFAULT_BATCH_WAIT_MS,
                        help="how long a batch waits for more requests after its first one; requests that arrive "
                             f"while the model is busy join the next batch anyway (default: {DEFAULT_BATCH_WAIT_MS:g})")
    parser.add_argument("--max-batch", type=int, default=DEFAULT_MAX_BATCH,
                        help=f"texts per model call (default: {DEFAULT_MAX_BATCH})")
    parser.add_argument("--batch-size", type=int, default=SERVE_BATCH_SIZE,
                        help="texts the model computes at once within a call, sorted by length (default: "
                             f"{SERVE_BATCH_SIZE})")
    parser.add_argument("--threads", type=int, default=None,
                        help="threads for the model, PyTorch's and ONNX Runtime's (default: PyTorch's, one per core)")
    parser.add_argument("--access-log", action="store_true", help="log every request (default: off)")
    return parser


def _check_arguments(parser: OneLineParser, args: Any) -> None:
    for name in ("max_texts", "max_text_chars", "max_body_bytes", "max_explain_texts", "max_queued_texts",
                 "max_batch", "batch_size", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be from 0 to 65535, got {args.port}")
    if not 0 <= args.batch_wait_ms <= 1000:
        parser.error(f"--batch-wait-ms must be from 0 to 1000, got {args.batch_wait_ms:g}")


def resolve_api_key(given: Optional[str], environ: Dict[str, str]) -> Optional[str]:
    """``--api-key``, else ``LSTM_SENTIMENT_API_KEY``, else None; ValueError for a key a header cannot carry."""
    key = given if given is not None else environ.get(API_KEY_ENV)
    if key is None:
        return None
    source = "--api-key" if given is not None else API_KEY_ENV
    if not key.strip():
        raise ValueError(f"{source} is empty; give a key (or neither --api-key nor {API_KEY_ENV}, for none)")
    if not (key.isascii() and key.isprintable()) or key != key.strip():
        raise ValueError(f"{source} must be printable ASCII without spaces at its ends, as an HTTP header carries it")
    return key


def _load_model(args: Any) -> Predictor:
    """The predictor, loaded in the thread it will run in (``batching.model_executor``)."""
    if args.threads:
        torch.set_num_threads(args.threads)  # before the model loads: ONNX Runtime takes the same count
    return load_predictor(args.model_dir, device=args.device, runtime=args.runtime, precision=args.precision)


def main(argv: Optional[List[str]] = None, prog: str = "python -m src.inference.serve") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    _check_arguments(parser, args)
    try:
        api_key = resolve_api_key(args.api_key, dict(os.environ))
        limits = Limits(args.max_texts, args.max_text_chars, args.max_body_bytes, args.max_explain_texts,
                        args.max_queued_texts)
    except ValueError as err:
        parser.error(str(err))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        sock = bind_socket(args.host, args.port)
    except OSError as err:
        return fail(f"cannot listen on {args.host}:{args.port} ({err.strerror or err}); choose another --port "
                    "or --host, or stop the program that uses it")
    with sock:
        model_thread = model_executor()
        try:
            predictor = model_thread.submit(_load_model, args).result()
        except (PipelineError, ValueError, OSError) as err:
            return fail(str(err))
        warning = exposure_warning(args.host, api_key)
        if warning:
            print(warning, file=sys.stderr, flush=True)
        app = create_app(predictor, args.model_dir, limits=limits, api_key=api_key,
                         batch_wait_ms=args.batch_wait_ms, max_batch=args.max_batch, batch_size=args.batch_size,
                         model_thread=model_thread, allowed_hosts=_allowed_hosts(args.host))
        try:
            make_server(app, access_log=args.access_log).run(sockets=[sock])
        except KeyboardInterrupt:  # Ctrl+C: uvicorn has shut down cleanly and raises it again
            pass
        if app.state.batcher.model_busy:
            # the model's thread would hold the exit until its call ends (minutes, for a long explanation)
            print("stopped while a model call was still running; not waiting for it", file=sys.stderr, flush=True)
            sys.stdout.flush()
            os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
