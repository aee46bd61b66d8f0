"""The HTTP layer: a thin Starlette app over the Predictor, built per worker by ``create_app``.

uvicorn spawns each worker and calls ``create_app`` there, so every worker maps the store
itself and nothing TensorFlow made is ever forked; the settings come in environment variables
(``KEE_SERVE_*``, set by ``python -m external_embeddings serve``). Requests are checked here at
the edge, so that a bad one is a 4xx with one JSON line ``{"error": ...}`` and never reaches
the batch it would share with other requests.
"""

import asyncio
import contextlib
import hmac
import json
import logging
import os
import sys
import time
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..errors import InputError
from ..runtime import open_runtime
from ..store import EmbeddingStore
from ..text.tokenizer import check_texts
from . import open_inference
from .batching import Batcher, ModelSet, log
from .limits import BodyTimeout, Limits
from .oip_codec import ProtocolError

# Defaults; each is a KEE_SERVE_<NAME> variable and a serve option.
DEFAULTS = {"MAX_TEXTS": 1024, "MAX_BYTES": 4_000_000, "BATCH_TEXTS": 64, "BATCH_WAIT_MS": 0.0,
            "POLL_SECONDS": 2.0, "LOAD_FIRST": 0, "GRPC_PORT": 0, "HOST": "127.0.0.1", "LIMIT_CONCURRENCY": 256,
            "BODY_TIMEOUT": 60.0, "HEADER_TIMEOUT": 10.0, "MAX_CONNECTIONS": 1000, "RUNTIME": "",
            "THREADS": -1, "FUSE": 1}


class Refused(Exception):
    """A request answered with ``status`` and ``{"error": message}``."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status, self.message = status, message


def setting(name):
    value = os.environ.get(f"KEE_SERVE_{name}")
    default = DEFAULTS.get(name)
    return default if value in (None, "") else type(default)(value) if default is not None else value


def make_metrics():
    """Prometheus metrics; with PROMETHEUS_MULTIPROC_DIR set, /metrics sums every worker's."""
    import prometheus_client as prom

    m = {"requests": prom.Counter("kee_requests_total", "HTTP requests", ["endpoint", "status"]),
         "errors": prom.Counter("kee_errors_total", "HTTP requests answered with an error", ["endpoint", "status"]),
         "latency": prom.Histogram("kee_request_seconds", "Time to answer a request", ["endpoint"],
                                   buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30)),
         "batch": prom.Histogram("kee_batch_texts", "Texts per model run (micro-batch size)",
                                 buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)),
         "texts": prom.Counter("kee_model_texts_total", "Texts run through each model", ["model"])}

    def render():
        registry = prom.REGISTRY
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = prom.CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return Response(prom.generate_latest(registry), media_type=prom.CONTENT_TYPE_LATEST)

    return m, render


async def read_json(request, max_bytes):
    """The body as JSON: 415 for another content type, 413 beyond ``max_bytes``, 400 if not JSON."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/json":
        raise Refused(415, f"content type is {kind or 'missing'!r}; send JSON with Content-Type: application/json")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise Refused(413, f"body of {int(declared):,} bytes is over the limit of {max_bytes:,}; send fewer texts")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise Refused(413, f"body is over the limit of {max_bytes:,} bytes; send fewer texts")
    try:
        return json.loads(body)
    except (ValueError, RecursionError) as e:  # UnicodeDecodeError is a ValueError
        raise Refused(400, f"body is not valid JSON ({str(e)[:100]})") from None


def check_predict(body, max_texts):
    """(texts, models, top_k) from a /v1/predict body, or a 4xx naming the field."""
    if not isinstance(body, dict):
        raise Refused(400, 'body must be a JSON object such as {"texts": ["..."]}')
    unknown = sorted(set(body) - {"texts", "models", "top_k"})
    if unknown:
        raise Refused(400, f"unknown field {unknown[0]!r}; the fields are texts, models and top_k")
    texts = body.get("texts")
    if not isinstance(texts, list):
        raise Refused(400, f"texts must be a list of strings (got {type(texts).__name__ if 'texts' in body else 'none'})")
    if not texts:
        raise Refused(400, "texts is empty; send at least one text")
    if len(texts) > max_texts:
        raise Refused(413, f"{len(texts):,} texts is over the limit of {max_texts:,} per request; split them")
    check_texts(texts, where="texts: text")  # non-strings and lone surrogates: InputError, a 400
    models, top_k = body.get("models"), body.get("top_k")
    if models is not None and (not isinstance(models, list) or not all(isinstance(m, str) for m in models)):
        raise Refused(400, "models must be a list of model names")
    if top_k is not None and (type(top_k) is not int or top_k < 1):
        raise Refused(400, f"top_k must be a whole number >= 1 (got {top_k!r})")
    return texts, models, top_k


def create_app():
    """The app of one worker: open the store, start loading the models, serve meanwhile."""
    store_path, models_dir, token = setting("STORE"), setting("MODELS"), setting("TOKEN")
    if not store_path or not models_dir:
        raise SystemExit("KEE_SERVE_STORE and KEE_SERVE_MODELS must be set; start with python -m external_embeddings serve")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"%(asctime)s worker {os.getpid()} %(levelname)s %(message)s"))
    log.handlers[:] = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
    runtime = open_runtime(setting("RUNTIME") or None, None if setting("THREADS") < 0 else setting("THREADS"),
                           bool(setting("FUSE")))
    if runtime.name == "keras":  # TensorFlow's start-up (and its C++ chatter) before serving, once per worker
        runtime.get("keras")
    store = EmbeddingStore.open(store_path)  # checked (verify) by the serve command before spawning
    models = ModelSet(store, models_dir, runtime)
    metrics, render_metrics = make_metrics()

    def counted(names, count):
        metrics["batch"].observe(count)
        for name in names:
            metrics["texts"].labels(name).inc(count)

    batcher = Batcher(models, setting("BATCH_TEXTS"), setting("BATCH_WAIT_MS") / 1000, counted)

    def ready():
        if models.predictor is None:
            raise Refused(503, f"not ready: {models.error}")
        return models.predictor

    def endpoint(name, public=False):
        """Wrap a handler: token check, metrics, and every refusal as one JSON line."""
        def wrap(handler):
            async def run(request):
                started = time.perf_counter()
                try:
                    if token and not public:
                        given = request.headers.get("authorization", "")
                        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                            raise Refused(401, "missing or wrong token; send Authorization: Bearer TOKEN")
                    response = await handler(request)
                except (Refused, ProtocolError) as e:
                    response = JSONResponse({"error": e.message}, e.status)
                except BodyTimeout as e:  # limits.Limits closes the connection after it
                    response = JSONResponse({"error": str(e)}, 408)
                except ClientDisconnect:  # nobody to answer; 499 as nginx logs it, for the metrics
                    response = JSONResponse({"error": "the client closed the connection"}, 499)
                except InputError as e:
                    response = JSONResponse({"error": str(e)}, 400)
                except Exception as e:  # a server fault: logged, answered, and the worker lives on
                    log.exception("%s failed", name)
                    response = JSONResponse({"error": f"internal error ({type(e).__name__})"}, 500)
                status = str(response.status_code)
                metrics["requests"].labels(name, status).inc()
                if response.status_code >= 400:
                    metrics["errors"].labels(name, status).inc()
                metrics["latency"].labels(name).observe(time.perf_counter() - started)
                return response
            return run
        return wrap

    @endpoint("predict")
    async def predict(request):
        texts, names, top_k = check_predict(await read_json(request, setting("MAX_BYTES")), setting("MAX_TEXTS"))
        ready().check_request(names, top_k)  # an unknown name is a 400 before it joins a batch
        return JSONResponse({"results": [{"models": r} for r in await batcher.submit(texts, names, top_k)]})

    @endpoint("models")
    async def list_models(request):
        predictor = ready()
        # What this worker runs on, and whether it has imported TensorFlow (it must not on ONNX).
        worker = {"pid": os.getpid(), "runtime": runtime.name, "threads": runtime.threads,
                  "imported": {name: name in sys.modules for name in ("tensorflow", "keras", "onnxruntime")}}
        return JSONResponse({"generation": models.generation, "store": store.describe(), "worker": worker,
                             "models": [{"name": name, **d} for name, d in predictor.describe().items()]})

    @endpoint("reload")
    async def reload(request):
        ready()
        error = await models.reload()
        if error:
            raise Refused(409, f"reload refused, still serving the previous models: {error}")
        return JSONResponse({"generation": models.generation, "models": list(models.predictor.models)})

    @endpoint("healthz", public=True)
    async def healthz(request):
        return JSONResponse({"alive": True, "worker": os.getpid()})

    @endpoint("readyz")
    async def readyz(request):
        return JSONResponse({"ready": True, "models": len(ready().models), "generation": models.generation})

    @endpoint("metrics")
    async def metrics_endpoint(request):
        return render_metrics()

    async def http_error(request, exc):  # 404 and 405 as JSON too
        return JSONResponse({"error": f"{exc.detail}: {request.method} {request.url.path}"}, exc.status_code)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        tasks = [asyncio.create_task(batcher.run())]
        grpc_server = None
        if setting("GRPC_PORT"):  # the Open Inference Protocol's gRPC form, beside this worker's HTTP
            from . import oip_grpc

            grpc_server = await oip_grpc.start(setting("HOST"), setting("GRPC_PORT"), models, batcher, token,
                                               setting("MAX_TEXTS"), setting("MAX_BYTES"))

        if setting("RUN_DIR"):  # tells the serve command that this worker is ready
            models.on_loaded = lambda: Path(setting("RUN_DIR"), f"ready-{os.getpid()}").touch()

        async def poll():
            if setting("POLL_SECONDS") > 0:
                await models.poll(setting("POLL_SECONDS"))

        async def load_then_poll():
            await models.reload()
            await poll()

        if setting("LOAD_FIRST"):
            # serve --ray: Ray Serve counts a replica as started once this start-up returns, so the
            # first load is awaited here, and "started" means the models answer (or /readyz says why not).
            await models.reload()
            tasks.append(asyncio.create_task(poll()))
        else:  # uvicorn: /healthz answers while the models load
            tasks.append(asyncio.create_task(load_then_poll()))
        try:
            yield
        finally:
            if grpc_server is not None:
                await grpc_server.stop(5)
            for task in tasks:
                task.cancel()
            batcher.executor.shutdown(wait=True)

    routes = [Route("/v1/predict", predict, methods=["POST"]), Route("/v1/models", list_models),
              Route("/v1/reload", reload, methods=["POST"]), Route("/healthz", healthz), Route("/readyz", readyz),
              Route("/metrics", metrics_endpoint)]
    routes += open_inference.routes(endpoint, models, ready, batcher, setting)  # the Open Inference Protocol
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.add_middleware(Limits, concurrency=setting("LIMIT_CONCURRENCY"), body_timeout=setting("BODY_TIMEOUT"))
    return app
