"""The Open Inference Protocol (KServe v2) on a real ``serve`` with two workers, called with tritonclient
(the reference client of the protocol) and, for the bad requests, with raw httpx."""

import asyncio
import gzip
import json
import shutil
import socket
import struct
import subprocess
import sys

import httpx
import numpy as np
import pytest

from conftest import ROOT, real_posts
from external_embeddings.predictor import Predictor
from external_embeddings.serving.batching import Batcher
from test_server import free_port, serve, stop

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

TOKEN = "0ip-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
A, B, BASE = "a/pretrained_external_word_embeddings", "b/pretrained_external_word_embeddings", \
    "base/pretrained_word_embeddings"
LABELS = ["rec.space", "rec.sport", "sci.med"]
MAX_TEXTS = 100


def auth():
    """A fresh headers dict per call: tritonclient adds Inference-Header-Content-Length to the dict it is
    given, so a shared one would carry a binary request's header length into the next JSON request."""
    return dict(AUTH)


TEXTS = ["The rocket reached orbit around the moon.", "", "Ünïcödé: the doctor in Zürich saw a patient, 東京 🚀 orbit",
         "nasa launch star planet", *real_posts()]
BATCH = [TEXTS[i % len(TEXTS)] for i in range(64)]


@pytest.fixture(scope="module")
def oip(served, tmp_path_factory):
    """One real server (2 workers, a token, gRPC too) for the whole module: (host:port, models folder, gRPC host:port)."""
    work, store = served
    folder = tmp_path_factory.mktemp("oip") / "models"
    shutil.copytree(work / "models", folder)
    shutil.copytree(work / "baseline", folder / "base")
    grpc_port = free_port()
    proc, url, line = serve(store, folder, "--workers", "2", "--token", TOKEN, "--max-texts", str(MAX_TEXTS),
                            "--grpc-port", str(grpc_port))
    try:
        assert f"(gRPC 127.0.0.1:{grpc_port}) with 2 worker(s)" in line
        yield url.removeprefix("http://"), folder, f"127.0.0.1:{grpc_port}"
    finally:
        code = stop(proc)
    assert code == 0  # Ctrl-C stops the gRPC servers with the workers, cleanly


@pytest.fixture(scope="module")
def expected(served, oip):
    """{text: {model: probabilities}} from the Predictor itself, in this process."""
    _, store = served
    predictor = Predictor(store, oip[1])
    return {text: {name: np.array(list(answer["probabilities"].values())) for name, answer in result.items()}
            for text, result in zip(TEXTS, predictor.predict(TEXTS))}


@pytest.fixture(scope="module")
def client(oip):
    with httpclient.InferenceServerClient(oip[0], concurrency=8, connection_timeout=60, network_timeout=120) as c:
        yield c


@pytest.fixture(scope="module")
def raw(oip):
    with httpx.Client(base_url=f"http://{oip[0]}", headers=auth(), timeout=60) as c:
        yield c


def inputs(texts, binary, shape=None):
    tensor = httpclient.InferInput("text", shape or [len(texts)], "BYTES")
    data = np.array([t.encode() for t in texts], dtype=object)
    tensor.set_data_from_numpy(data.reshape(shape) if shape else data, binary_data=binary)
    return [tensor]


def check(result, texts, name, expected):
    probabilities = result.as_numpy("probabilities")
    assert probabilities.dtype == np.float32 and probabilities.shape == (len(texts), len(LABELS))
    want = np.array([expected[text][name] for text in texts])
    np.testing.assert_allclose(probabilities, want, rtol=0, atol=1e-6)
    # BYTES elements come back as bytes from the binary form, as str from the JSON form.
    assert [label if isinstance(label, str) else label.decode() for label in result.as_numpy("labels")] == LABELS


def test_health_and_metadata(client):
    assert client.is_server_live() and client.is_server_ready(headers=auth())
    for name in (A, B, BASE):
        assert client.is_model_ready(name, headers=auth()) and client.is_model_ready(name, "1", headers=auth())
    server = client.get_server_metadata(headers=auth())
    assert server["name"] == "keras-external-embeddings" and "binary_tensor_data" in server["extensions"]
    for version in ("", "1"):
        meta = client.get_model_metadata(A, version, headers=auth())
        assert meta["name"] == A and meta["versions"] == ["1"] and meta["platform"] == "tensorflow_keras"
        assert meta["inputs"] == [{"name": "text", "datatype": "BYTES", "shape": [-1]}]
        assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]},
                                   {"name": "labels", "datatype": "BYTES", "shape": [3]}]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_infer_equals_the_predictor(client, expected, binary):
    for name in (A, B, BASE):
        for texts in ([TEXTS[1]], [TEXTS[2]], TEXTS, BATCH):
            outputs = [httpclient.InferRequestedOutput(o, binary_data=binary) for o in ("probabilities", "labels")]
            result = client.infer(name, inputs(texts, binary), outputs=outputs, request_id=f"r-{len(texts)}",
                                  headers=auth())
            check(result, texts, name, expected)
            assert result.get_response()["id"] == f"r-{len(texts)}"
            assert result.get_response()["model_name"] == name


def test_client_defaults_and_the_n_by_1_shape(client, expected):
    # No outputs named: tritonclient asks binary_data_output and the server sends both outputs binary.
    result = client.infer(A, inputs(TEXTS, True), headers=auth())
    check(result, TEXTS, A, expected)
    assert all("binary_data_size" in o["parameters"] for o in result.get_response()["outputs"])
    result = client.infer(B, inputs(TEXTS, False, shape=[len(TEXTS), 1]), model_version="1", headers=auth(),
                          outputs=[httpclient.InferRequestedOutput("probabilities", binary_data=False)])
    check_only = result.as_numpy("probabilities")
    np.testing.assert_allclose(check_only, [expected[t][B] for t in TEXTS], rtol=0, atol=1e-6)
    assert [o["name"] for o in result.get_response()["outputs"]] == ["probabilities"]


@pytest.mark.parametrize("compression", ["gzip", "deflate"])
def test_compressed_requests(client, expected, compression):
    for binary in (True, False):
        result = client.infer(A, inputs(TEXTS, binary), headers=auth(), request_compression_algorithm=compression,
                              response_compression_algorithm=compression)  # answered uncompressed, as allowed
        check(result, TEXTS, A, expected)


def test_many_requests_in_flight(client, expected):
    jobs = []
    for i in range(48):
        name, texts = (A, B, BASE)[i % 3], [TEXTS[(i + j) % len(TEXTS)] for j in range(1 + i % 7)]
        jobs.append((name, texts, client.async_infer(name, inputs(texts, i % 2 == 0), headers=auth())))
    for name, texts, pending in jobs:
        check(pending.get_result(timeout=120), texts, name, expected)


def test_the_token_goes_through_the_clients_headers(client, oip):
    with pytest.raises(InferenceServerException, match="token"):
        client.infer(A, inputs(["orbit"], True))
    with pytest.raises(InferenceServerException, match="token"):
        client.get_model_metadata(A, headers={"Authorization": "Bearer wrong"})
    assert client.is_server_live() and client.is_server_ready()  # the probes need no token
    with httpx.Client(base_url=f"http://{oip[0]}", timeout=60) as anonymous:
        for path in ("/v2/health/live", "/v2/health/ready"):
            answer = anonymous.get(path)
            assert answer.status_code == 200 and answer.content == b""
        for method, path in (("GET", "/v2"), ("GET", f"/v2/models/{A}"), ("GET", f"/v2/models/{A}/ready"),
                             ("POST", f"/v2/models/{A}/infer")):
            for headers in ({}, {"Authorization": "Bearer wrong"}):
                answer = anonymous.request(method, path, headers=headers, json=good_body())
                assert answer.status_code == 401 and "token" in answer.json()["error"]


def test_a_slashed_name_also_works_escaped(raw):
    escaped = A.replace("/", "%2F")
    assert raw.get(f"/v2/models/{escaped}").json()["name"] == A
    assert raw.get(f"/v2/models/{escaped}/versions/1/ready").status_code == 200
    answer = raw.post(f"/v2/models/{escaped}/versions/1/infer", json=good_body())
    assert answer.status_code == 200 and answer.json()["outputs"][0]["shape"] == [1, 3]


def test_curl_like_json_request(raw, expected):
    """The docs' JSON example: no Content-Type needed, outputs in JSON, the id echoed."""
    body = {"id": "42", "inputs": [{"name": "text", "shape": [2], "datatype": "BYTES", "data": TEXTS[:2]}]}
    answer = raw.post(f"/v2/models/{A}/infer", content=json.dumps(body))
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    reply = answer.json()
    assert reply["id"] == "42" and reply["model_name"] == A and reply["model_version"] == "1"
    probabilities, labels = reply["outputs"]
    assert probabilities["shape"] == [2, 3] and labels["data"] == LABELS
    np.testing.assert_allclose(np.reshape(probabilities["data"], (2, 3)), [expected[t][A] for t in TEXTS[:2]],
                               rtol=0, atol=1e-6)


def good_body(texts=("orbit",)):
    return {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": list(texts)}]}


def binary_body(raw_tensor, size=None, shape=(1,)):
    """A binary-extension body: (bytes, headers) with the header's length in the HTTP header."""
    header = json.dumps({"inputs": [{"name": "text", "shape": list(shape), "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(raw_tensor) if size is None else size}}]})
    return header.encode() + raw_tensor, {"Inference-Header-Content-Length": str(len(header))}


def element(data):
    return struct.pack("<I", len(data)) + data


def tensor(**changes):
    return {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["orbit"], **changes}]}


def as_json(body):
    return json.dumps(body).encode(), {}


BAD = {  # name: ((body, headers), status, words in the error)
    "bad JSON": ((b'{"inputs": [', {}), 400, "not valid JSON"),
    "not an object": (as_json(["orbit"]), 400, "JSON object"),
    "no inputs": (as_json({}), 400, "inputs must be a list"),
    "unknown input": (as_json(tensor(name="input_1")), 400, "one input, 'text'"),
    "wrong datatype": (as_json(tensor(datatype="FP32", data=[1.0])), 400, "datatype 'FP32'"),
    "shape disagrees with data": (as_json(tensor(shape=[3])), 400, "shape [3] but 1 elements"),
    "shape of 2 columns": (as_json(tensor(shape=[1, 2])), 400, "shape [1, 2]"),
    "a number as a text": (as_json(tensor(data=[7])), 400, "is a int, not a string"),
    "empty": (as_json(tensor(shape=[0], data=[])), 400, "empty"),
    "unknown output": (as_json({**tensor(), "outputs": [{"name": "logits"}]}), 400, "output 'logits'"),
    "lone surrogate in JSON": ((b'{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", '
                                b'"data": ["\\ud800"]}]}', {}), 400, "not valid UTF-8"),
    "non-UTF-8 bytes": (binary_body(element(b"caf\xe9")), 400, "not valid UTF-8"),
    "binary size past the body": (binary_body(element(b"orbit"), size=100), 400, "runs past the body"),
    "element past its tensor": (binary_body(struct.pack("<I", 50) + b"orbit"), 400, "runs past the tensor"),
    "cut element length": (binary_body(b"\x05\x00"), 400, "cut length"),
    "binary shape disagrees": (binary_body(element(b"a") + element(b"b")), 400, "shape [1] but 2 elements"),
    "header length past the body": ((b'{"inputs": []}', {"Inference-Header-Content-Length": "999"}), 400,
                                    "runs past the body"),
    "header length not a number": ((b'{"inputs": []}', {"Inference-Header-Content-Length": "ten"}), 400,
                                   "not a byte count"),
    "bytes after the tensors": ((binary_body(element(b"orbit"))[0] + b"xx", binary_body(element(b"orbit"))[1]),
                                400, "after the binary tensors"),
    "too many texts": (as_json(good_body(["orbit"] * (MAX_TEXTS + 1))), 413, f"limit of {MAX_TEXTS}"),
    "gzip that unpacks past the limit": ((gzip.compress(b" " * 5_000_000), {"Content-Encoding": "gzip"}), 413,
                                         "unpacks to over the limit of 4,000,000"),
    "not gzip": ((b"\x1f\x8b not gzip", {"Content-Encoding": "gzip"}), 400, "not valid gzip"),
    "cut gzip": ((gzip.compress(json.dumps(good_body()).encode())[:-6], {"Content-Encoding": "gzip"}), 400,
                 "not one whole gzip"),
    "unknown encoding": ((json.dumps(good_body()).encode(), {"Content-Encoding": "br"}), 415, "'br'"),
}


@pytest.mark.parametrize("name", BAD)
def test_a_bad_tensor_is_one_error_and_the_server_keeps_serving(raw, name):
    (body, headers), status, words = BAD[name]
    answer = raw.post(f"/v2/models/{A}/infer", content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert list(answer.json()) == ["error"] and words in answer.json()["error"]
    good = raw.post(f"/v2/models/{A}/infer", json=good_body())
    assert good.status_code == 200 and good.json()["outputs"][0]["shape"] == [1, 3]


@pytest.mark.parametrize("method, path, status, words", [
    ("POST", "/v2/models/nope/infer", 404, "unknown model 'nope'"),
    ("GET", "/v2/models/nope", 404, "unknown model 'nope'"),
    ("GET", "/v2/models/a/ready", 404, "unknown model 'a'"),  # a folder above a model is not a model
    ("GET", f"/v2/models/{A}/versions/2/ready", 404, "no version '2'"),
    ("POST", f"/v2/models/{A}/versions/2/infer", 404, "no version '2'"),
    ("GET", f"/v2/models/{A}/infer", 405, "POST"),
    ("POST", f"/v2/models/{A}", 405, "POST"),
])
def test_unknown_models_and_wrong_methods(raw, method, path, status, words):
    answer = raw.request(method, path, json=good_body())
    assert answer.status_code == status and words in answer.json()["error"]
    assert raw.post(f"/v2/models/{A}/infer", json=good_body()).status_code == 200


def test_requests_for_several_models_share_one_batch():
    """Protocol requests (one model each) queued together run as one Predictor call over the union of
    their models, and each gets back its own model's full answer."""
    calls = []

    class Fake:
        models = {"m1": None, "m2": None}

        def check_request(self, names, top_k):
            return names

        def predict(self, texts, names, top_k):
            calls.append((list(texts), names))
            return [{n: {"label": "x", "probability": 1.0, "probabilities": {"x": 1.0}, "known_words": 1, "text": t}
                     for n in names} for t in texts]

    class Models:
        predictor = Fake()

    async def run():
        batcher = Batcher(Models(), 64, 0.05)
        worker = asyncio.create_task(batcher.run())
        try:
            return await asyncio.gather(batcher.submit(["a", "b"], ["m1"], None, full=True),
                                        batcher.submit(["c"], ["m2"], None, full=True),
                                        batcher.submit(["d"], ["m2"]))
        finally:
            worker.cancel()
            batcher.executor.shutdown()

    first, second, trimmed = asyncio.run(run())
    assert calls == [(["a", "b", "c", "d"], ["m1", "m2"])]
    assert [list(r) for r in first] == [["m1"], ["m1"]] and [r["m1"]["text"] for r in first] == ["a", "b"]
    assert second[0]["m2"]["probabilities"] == {"x": 1.0} and second[0]["m2"]["text"] == "c"
    assert "probabilities" not in trimmed[0]["m2"]  # /v1/predict's answers stay trimmed


GRPC_AUTH = {"authorization": f"Bearer {TOKEN}"}  # gRPC metadata keys are lowercase


@pytest.fixture(scope="module")
def grpc_client(oip):
    grpcclient = pytest.importorskip("tritonclient.grpc")
    with grpcclient.InferenceServerClient(oip[2]) as c:
        yield grpcclient, c


def test_grpc_form_equals_the_predictor(grpc_client, expected):
    grpcclient, client = grpc_client
    assert client.is_server_live() and client.is_server_ready()  # the probes need no token
    assert client.is_model_ready(A, headers=GRPC_AUTH) and client.is_model_ready(A, "1", headers=GRPC_AUTH)
    assert "binary_tensor_data" in client.get_server_metadata(headers=GRPC_AUTH).extensions
    meta = client.get_model_metadata(BASE, headers=GRPC_AUTH, as_json=True)
    assert meta["name"] == BASE and [o["name"] for o in meta["outputs"]] == ["probabilities", "labels"]
    for name in (A, BASE):
        for texts in ([TEXTS[2]], TEXTS, BATCH):
            text = grpcclient.InferInput("text", [len(texts)], "BYTES")
            text.set_data_from_numpy(np.array([t.encode() for t in texts], dtype=object))
            result = client.infer(name, [text], headers=GRPC_AUTH, request_id="g1")
            check(result, texts, name, expected)
            assert result.get_response().id == "g1"


@pytest.mark.parametrize("case, code, words", [
    ("no token", "UNAUTHENTICATED", "token"), ("unknown model", "NOT_FOUND", "unknown model 'nope'"),
    ("wrong version", "NOT_FOUND", "no version '2'"), ("wrong datatype", "INVALID_ARGUMENT", "datatype 'FP32'"),
    ("non-UTF-8", "INVALID_ARGUMENT", "not valid UTF-8"), ("too many texts", "RESOURCE_EXHAUSTED", "limit of 100"),
])
def test_grpc_errors_are_statuses_and_the_server_keeps_serving(grpc_client, case, code, words):
    grpcclient, client = grpc_client
    texts = [b"orbit"] * (MAX_TEXTS + 1 if case == "too many texts" else 1)
    text = grpcclient.InferInput("text", [len(texts)], "FP32" if case == "wrong datatype" else "BYTES")
    if case == "wrong datatype":
        text.set_data_from_numpy(np.zeros(1, np.float32))
    else:
        text.set_data_from_numpy(np.array([b"caf\xe9"] if case == "non-UTF-8" else texts, dtype=object))
    with pytest.raises(InferenceServerException) as raised:
        client.infer("nope" if case == "unknown model" else A, [text], model_version="2" if case == "wrong version" else "",
                     headers=None if case == "no token" else GRPC_AUTH)
    assert code in raised.value.status() and words in raised.value.message()
    good = grpcclient.InferInput("text", [1], "BYTES").set_data_from_numpy(np.array([b"orbit"], dtype=object))
    assert client.infer(A, [good], headers=GRPC_AUTH).as_numpy("probabilities").shape == (1, 3)


def test_serve_refuses_an_unusable_grpc_port(served, oip):
    _, store = served
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        for options in (["--port", "8123", "--grpc-port", "8123"], ["--grpc-port", "8124", "--ray"],
                        ["--grpc-port", str(busy)]):
            done = subprocess.run([sys.executable, "-m", "external_embeddings", "serve", "--store", str(store.path),
                                   "--models", str(oip[1]), *options], capture_output=True, text=True, cwd=ROOT,
                                  timeout=120)
            assert done.returncode == 2 and done.stderr.startswith("error: command line: --grpc-port")
            assert len(done.stderr.splitlines()) == 1
