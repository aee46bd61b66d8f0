"""The Open Inference Protocol (KServe v2) beside /v1: the same workers, Predictor and micro-batcher.

Clients made for KServe, Triton (tritonclient), Seldon MLServer or OpenVINO Model Server can call
the models without knowing this server's own JSON. A model's name is its folder below the
models folder, as /v1/models lists it, so it may hold ``/``: tritonclient sends it unescaped
and Starlette decodes ``%2F`` into ``/`` too, so one ``/v2/models/{rest:path}`` route takes
both, and the served names themselves tell the name from the ``/versions/...``, ``/ready`` and
``/infer`` suffixes (the longest name that leaves a valid suffix wins).

Each infer request is for one model; it joins the same batch queue as /v1/predict's requests,
so concurrent requests for several models still share one tokenization and store lookup.
"""

import re
import zlib

import numpy as np
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..text.tokenizer import check_texts
from . import oip_codec
from .oip_codec import ProtocolError

SERVER = {"name": "keras-external-embeddings", "version": "1.0.0", "extensions": ["binary_tensor_data"]}
# The protocol's "<framework>_<format>", by the runtime that serves the model (--runtime).
PLATFORMS = {"keras": "tensorflow_keras", "onnx": "onnxruntime_onnx"}
VERSION = "1"  # each model folder is one version; a reload replaces it in place
SUFFIX = re.compile(r"(?:/versions/(?P<version>[^/]+))?(?P<action>/ready|/infer)?")


def resolve(rest, names):
    """(model name, action) of the path after /v2/models/; action is "", "/ready" or "/infer".

    The longest served name that leaves a valid suffix wins; 404 if none does, or if the
    version asked for is not the model's one version.
    """
    for name in sorted(names, key=len, reverse=True):
        if rest == name or rest.startswith(name + "/"):
            match = SUFFIX.fullmatch(rest[len(name):])
            if match:
                if match["version"] not in (None, VERSION):
                    raise ProtocolError(404, f"model {name!r} has no version {match['version']!r}; "
                                             f"its one version is {VERSION!r}")
                return name, match["action"] or ""
    guess = re.sub(r"(?:/versions/[^/]+)?(?:/ready|/infer)?$", "", rest)
    raise ProtocolError(404, f"unknown model {guess!r}; the models are listed at GET /v1/models")


def empty():
    """The protocol's health answers carry no body: the status code is the answer."""
    return Response(b"", 200)


async def read_body(request, max_bytes):
    """The whole body, or a 413 beyond ``max_bytes`` (declared or streamed)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise ProtocolError(413, f"body of {int(declared):,} bytes is over the limit of {max_bytes:,}; "
                                 "send fewer texts")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise ProtocolError(413, f"body is over the limit of {max_bytes:,} bytes; send fewer texts")
    return bytes(body)


def decoded(body, encoding, max_bytes):
    """The body as sent before ``Content-Encoding`` (gzip or deflate, as tritonclient's
    ``request_compression_algorithm`` sends it), unpacked to ``max_bytes`` at most: a small
    compressed body must not unpack into gigabytes."""
    encoding = (encoding or "identity").strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise ProtocolError(415, f"Content-Encoding {encoding!r} is not supported; send gzip, deflate or none")
    unpacker = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)  # 31: gzip's header, 15: zlib's
    try:
        data = unpacker.decompress(body, max_bytes + 1)
    except zlib.error as e:
        raise ProtocolError(400, f"the body is not valid {encoding} data ({e})") from None
    if len(data) > max_bytes or unpacker.unconsumed_tail:
        raise ProtocolError(413, f"the body unpacks to over the limit of {max_bytes:,} bytes; send fewer texts")
    if not unpacker.eof or unpacker.unused_data:
        raise ProtocolError(400, f"the body is not one whole {encoding} stream; send it compressed once, in full")
    return data


def model_metadata(name, manifest, runtime):
    labels = manifest["labels"]
    return {"name": name, "versions": [VERSION], "platform": PLATFORMS[runtime],
            "inputs": [{"name": oip_codec.INPUT, "datatype": "BYTES", "shape": [-1]}],
            "outputs": [{"name": oip_codec.PROBABILITIES, "datatype": "FP32", "shape": [-1, len(labels)]},
                        {"name": oip_codec.LABELS, "datatype": "BYTES", "shape": [len(labels)]}]}


def routes(endpoint, models, ready, batcher, setting):
    """The protocol's routes, wrapped by the app's ``endpoint`` (token check, metrics, errors)."""

    def not_ready():
        # The protocol answers "false" with a 4xx (as Triton does, 400); the reason is in the body.
        return JSONResponse({"error": f"not ready: {models.error}"}, 400)

    @endpoint("v2_live", public=True)
    async def live(request):
        return empty()

    @endpoint("v2_ready", public=True)
    async def server_ready(request):
        return not_ready() if models.predictor is None else empty()

    @endpoint("v2_server")
    async def server_metadata(request):
        return JSONResponse(SERVER)

    @endpoint("v2_model")
    async def model(request):
        if request.method == "GET" and models.predictor is None:
            # Names are known once the models are loaded; until then no model is ready.
            return not_ready()
        predictor = ready()
        name, action = resolve(request.path_params["rest"], predictor.models)
        if (action == "/infer") != (request.method == "POST"):
            raise ProtocolError(405, f"{request.method} {request.url.path}: use GET for a model's metadata "
                                     "and readiness, POST for .../infer")
        if action == "/ready":
            return empty()
        manifest = predictor.models[name][1]
        if action == "":
            return JSONResponse(model_metadata(name, manifest, predictor.info[name].runtime))
        body = decoded(await read_body(request, setting("MAX_BYTES")), request.headers.get("content-encoding"),
                       setting("MAX_BYTES"))
        parsed = oip_codec.parse_request(body, request.headers.get("inference-header-content-length"),
                                         setting("MAX_TEXTS"))
        check_texts(parsed.texts, where=f"input {oip_codec.INPUT!r}: element")  # lone surrogates: a 400 here
        results = await batcher.submit(parsed.texts, [name], None, full=True)
        labels = manifest["labels"]
        probabilities = np.array([list(r[name]["probabilities"].values()) for r in results], dtype=np.float32)
        content, header_length = oip_codec.encode_response(name, parsed, probabilities, labels)
        if header_length is None:
            return Response(content, 200, media_type="application/json")
        return Response(content, 200, media_type="application/octet-stream",
                        headers={"Inference-Header-Content-Length": str(header_length)})

    return [Route("/v2", server_metadata), Route("/v2/health/live", live), Route("/v2/health/ready", server_ready),
            Route("/v2/models/{rest:path}", model, methods=["GET", "POST"])]
