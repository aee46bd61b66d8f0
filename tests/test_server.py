"""The real server in a subprocess on a free port, talked to over HTTP with httpx."""

import concurrent.futures
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import pytest

from conftest import ROOT
from external_embeddings.predictor import Predictor

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TEXTS = ["The rocket reached orbit around the moon.", "The doctor saw a patient with a virus.",
         "The pitcher threw in the ninth inning\nand the team won.", "", "zorblax", "nasa launch star planet"]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(store, models, *options):
    """Start ``serve`` and return (process, url, ready line) once it says it is ready."""
    port = free_port()
    log = tempfile.TemporaryFile("w+")  # a file, not a pipe: a full pipe would block the server
    proc = subprocess.Popen([sys.executable, "-m", "external_embeddings", "serve", "--store", str(store.path),
                             "--models", str(models), "--port", str(port), *options],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=log, text=True)
    line = proc.stdout.readline()  # the ready line, or "" if it exited
    if not line.startswith("Serving"):
        stop(proc)
        log.seek(0)
        pytest.fail(f"the server did not start: {line}{log.read()[-3000:]}")
    return proc, f"http://127.0.0.1:{port}", line


def stop(proc, sig=signal.SIGINT):
    """Stop the server as Ctrl-C does; kill it only if it does not stop. Returns its exit code."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        return proc.wait()


@pytest.fixture(scope="module")
def models(served, tmp_path_factory):
    """A models folder of two external models and one baseline, which the reload tests change."""
    work, _ = served
    folder = tmp_path_factory.mktemp("serving") / "models"
    shutil.copytree(work / "models", folder)
    shutil.copytree(work / "baseline", folder / "base")
    return folder


@pytest.fixture(scope="module")
def server(served, models):
    _, store = served
    proc, url, _ = serve(store, models, "--token", TOKEN, "--max-texts", "8", "--max-bytes", "4000",
                         "--poll-seconds", "0.3")
    try:
        with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
            yield client
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def expected(served, models):
    _, store = served
    return dict(zip(TEXTS, Predictor(store, models).predict(TEXTS, top_k=2)))


def post(client, body, **kwargs):
    return client.post("/v1/predict", json=body, **kwargs)


def check_same(result, expected):
    assert set(result["models"]) == set(expected)
    for name, answer in result["models"].items():
        want = expected[name]
        assert answer["label"] == want["label"] and answer["known_words"] == want["known_words"]
        assert answer["probability"] == pytest.approx(want["probability"], abs=1e-5)


def test_predict_equals_the_predictor(server, expected):
    answer = post(server, {"texts": TEXTS})
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert len(results) == len(TEXTS)
    for text, result in zip(TEXTS, results):
        check_same(result, expected[text])
        assert all("top_k" not in a for a in result["models"].values())


def test_predict_picks_models_and_top_k(server, expected):
    name = "base/pretrained_word_embeddings"
    results = post(server, {"texts": TEXTS[:2], "models": [name], "top_k": 2}).json()["results"]
    for text, result in zip(TEXTS, results):
        assert list(result["models"]) == [name]
        top = result["models"][name]["top_k"]
        assert [t["label"] for t in top] == [t["label"] for t in expected[text][name]["top_k"]]


def test_order_is_kept_under_concurrent_requests(server, expected):
    requests = [[TEXTS[(i + j) % len(TEXTS)] for j in range(1 + i % 5)] for i in range(24)]
    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        answers = list(pool.map(lambda texts: post(server, {"texts": texts}), requests))
    for texts, answer in zip(requests, answers):
        assert answer.status_code == 200
        for text, result in zip(texts, answer.json()["results"], strict=True):
            check_same(result, expected[text])


def test_models_health_and_metrics(server, served):
    _, store = served
    listed = server.get("/v1/models").json()
    assert listed["store"]["fingerprint"] == store.fingerprint
    kinds = {m["name"]: m["kind"] for m in listed["models"]}
    assert kinds == {"a/pretrained_external_word_embeddings": "external",
                     "b/pretrained_external_word_embeddings": "external", "base/pretrained_word_embeddings": "baseline"}
    for m in listed["models"]:
        assert m["labels"] == ["rec.space", "rec.sport", "sci.med"] and m["parameter_bytes"] > 0
        assert m["sequence_length"] in (150, 170)
    assert server.get("/readyz").json()["ready"] is True
    post(server, {"texts": TEXTS[:3]})
    metrics = server.get("/metrics")
    assert metrics.status_code == 200
    assert 'kee_requests_total{endpoint="predict",status="200"}' in metrics.text
    assert 'kee_model_texts_total{model="base/pretrained_word_embeddings"}' in metrics.text
    assert "kee_batch_texts_bucket" in metrics.text and "kee_request_seconds_bucket" in metrics.text


def test_onnx_workers_never_load_tensorflow(served, models, expected):
    """After serving requests, neither worker has imported TensorFlow or Keras or mapped
    TensorFlow's library; each has its share of the cores as threads; the answers are Keras'."""
    _, store = served
    proc, url, _ = serve(store, models, "--runtime", "onnx", "--workers", "2", "--poll-seconds", "0")
    try:
        workers = [w.pid for w in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(w.cmdline())]
        with httpx.Client(base_url=url, timeout=60) as client:
            for _ in range(6):
                for text, result in zip(TEXTS, client.post("/v1/predict", json={"texts": TEXTS}).json()["results"]):
                    check_same(result, expected[text])
                worker = client.get("/v1/models").json()["worker"]
                assert worker["runtime"] == "onnx" and worker["threads"] == max(1, len(os.sched_getaffinity(0)) // 2)
                assert worker["imported"] == {"tensorflow": False, "keras": False, "onnxruntime": True}
            assert {m["runtime"] for m in client.get("/v1/models").json()["models"]} == {"onnx"}
        assert len(workers) == 2
        for pid in workers:
            maps = Path(f"/proc/{pid}/maps").read_text()
            assert "onnxruntime" in maps and "libtensorflow" not in maps and "_pywrap_tensorflow" not in maps
    finally:
        stop(proc)


JSON = {"Content-Type": "application/json"}
BAD = {  # name: (body bytes, headers, status, words in the error)
    "invalid JSON": (b'{"texts": [', JSON, 400, "not valid JSON"),
    "not UTF-8": (b'{"texts": ["\xff"]}', JSON, 400, "not valid JSON"),
    "deeply nested": (b"[" * 3000, JSON, 400, "not valid JSON"),
    "wrong content type": (b'{"texts": ["a"]}', {"Content-Type": "text/plain"}, 415, "content type"),
    "no content type": (b'{"texts": ["a"]}', {}, 415, "content type"),
    "not an object": (b'["a"]', JSON, 400, "JSON object"),
    "missing texts": (b"{}", JSON, 400, "texts must be a list"),
    "texts not a list": (b'{"texts": "a"}', JSON, 400, "texts must be a list"),
    "a text not a string": (b'{"texts": ["a", 3]}', JSON, 400, "text 2: is a int"),
    "empty list": (b'{"texts": []}', JSON, 400, "empty"),
    "too many texts": (json.dumps({"texts": ["a"] * 9}).encode(), JSON, 413, "limit of 8"),
    "too many bytes": (json.dumps({"texts": ["a" * 5000]}).encode(), JSON, 413, "limit of 4,000"),
    "unknown model": (b'{"texts": ["a"], "models": ["../../etc/passwd"]}', JSON, 400, "names no model"),
    "models not a list": (b'{"texts": ["a"], "models": "a"}', JSON, 400, "models must be a list"),
    "lone surrogate": (b'{"texts": ["ok", "\\ud800"]}', JSON, 400, "not valid UTF-8"),
    "top_k zero": (b'{"texts": ["a"], "top_k": 0}', JSON, 400, "top_k"),
    "top_k true": (b'{"texts": ["a"], "top_k": true}', JSON, 400, "top_k"),
    "unknown field": (b'{"text": ["a"]}', JSON, 400, "unknown field 'text'"),
}


@pytest.mark.parametrize("name", BAD)
def test_a_bad_request_is_one_json_error_line_and_the_worker_lives(server, name):
    body, headers, status, words = BAD[name]
    answer = server.post("/v1/predict", content=body, headers=headers)
    assert answer.status_code == status
    assert len(answer.text.splitlines()) == 1 and list(answer.json()) == ["error"]
    assert words in answer.json()["error"]
    assert post(server, {"texts": ["orbit"]}).status_code == 200


def test_unknown_paths_and_methods_are_json_errors(server):
    for answer, status in ((server.get("/nope"), 404), (server.get("/v1/predict"), 405)):
        assert answer.status_code == status and "error" in answer.json()


def test_every_endpoint_but_healthz_needs_the_token(server):
    url = str(server.base_url)
    with httpx.Client(base_url=url, timeout=60) as anonymous:
        assert anonymous.get("/healthz").status_code == 200
        for method, path in (("POST", "/v1/predict"), ("GET", "/v1/models"), ("GET", "/readyz"),
                             ("GET", "/metrics"), ("POST", "/v1/reload")):
            for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
                answer = anonymous.request(method, path, json={"texts": ["a"]}, headers=headers)
                assert answer.status_code == 401 and "token" in answer.json()["error"]


def names(server):
    return {m["name"] for m in server.get("/v1/models").json()["models"]}


def test_reload_adds_a_good_model(server, models):
    before = server.get("/v1/models").json()["generation"]
    shutil.copytree(models / "a", models / "c")
    answer = server.post("/v1/reload")
    assert answer.status_code == 200 and answer.json()["generation"] > before
    assert "c/pretrained_external_word_embeddings" in names(server)
    result = post(server, {"texts": ["orbit"]}).json()["results"][0]["models"]
    assert result["c/pretrained_external_word_embeddings"] == result["a/pretrained_external_word_embeddings"]


@pytest.mark.parametrize("damage", ["corrupt model file", "another store"])
def test_reload_refuses_a_bad_model_and_keeps_serving(server, models, damage):
    before = names(server)
    bad = models / "bad" / "run"
    shutil.copytree(models / "a" / "pretrained_external_word_embeddings", bad)
    if damage == "corrupt model file":
        (bad / "model.keras").write_bytes(b"not a zip archive")
    else:
        manifest = json.loads((bad / "manifest.json").read_text())
        manifest["store"]["fingerprint"] = "0" * 64
        (bad / "manifest.json").write_text(json.dumps(manifest))
    try:
        answer = server.post("/v1/reload")
        assert answer.status_code == 409
        assert "still serving the previous models" in answer.json()["error"] and "bad/run" in answer.json()["error"]
        assert names(server) == before
        assert post(server, {"texts": TEXTS}).status_code == 200
    finally:
        shutil.rmtree(models / "bad")


def test_a_changed_folder_is_reloaded_without_a_request(server, models):
    shutil.rmtree(models / "c")
    deadline = time.monotonic() + 60  # polled every 0.3 s; the deadline only bounds a failing test
    while "c/pretrained_external_word_embeddings" in names(server) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert "c/pretrained_external_word_embeddings" not in names(server)


def wait_for(server, present, name, seconds=60):
    """Wait (polled every 0.3 s; the deadline only bounds a failing test) until ``name`` is served or gone."""
    deadline = time.monotonic() + seconds
    while (name in names(server)) != present and time.monotonic() < deadline:
        time.sleep(0.2)
    return name in names(server)


def test_a_model_behind_a_link_is_served_and_a_change_behind_the_link_reloads(server, models, tmp_path):
    version = tmp_path / "versions" / "v1"
    shutil.copytree(models / "a", version)
    (models / "current").symlink_to(version)
    try:
        assert wait_for(server, True, "current/pretrained_external_word_embeddings")
        shutil.copytree(version / "pretrained_external_word_embeddings", version / "second")  # behind the link
        assert wait_for(server, True, "current/second")
    finally:
        (models / "current").unlink()
    assert not wait_for(server, False, "current/pretrained_external_word_embeddings")


def test_the_folder_signature_follows_links_and_sees_a_link_pointed_elsewhere(tmp_path):
    from external_embeddings.serving.batching import folder_signature

    for version in ("v1", "v2"):
        (tmp_path / version / "run").mkdir(parents=True)
        (tmp_path / version / "run" / "model.keras").write_bytes(b"same bytes")
    shutil.copystat(tmp_path / "v1" / "run" / "model.keras", tmp_path / "v2" / "run" / "model.keras")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "current").symlink_to(tmp_path / "v1")
    first = folder_signature(tmp_path / "models")
    assert [entry[0] for entry in first] == ["current/run/model.keras"]
    (tmp_path / "v1" / "run" / "manifest.json").write_text("{}")  # a change behind the link
    second = folder_signature(tmp_path / "models")
    assert second != first
    (tmp_path / "models" / "current").unlink()
    (tmp_path / "models" / "current").symlink_to(tmp_path / "v2")  # same names, sizes and times: other files
    third = folder_signature(tmp_path / "models")
    assert [entry[0] for entry in third] == ["current/run/model.keras"] and third != first
    (tmp_path / "v2" / "run" / "loop").symlink_to(tmp_path / "models")  # walked once, not forever
    assert folder_signature(tmp_path / "models") == third


def test_two_workers_serve_alike_and_stop_cleanly_on_ctrl_c(served, models, expected):
    _, store = served
    proc, url, line = serve(store, models, "--workers", "2")
    try:
        assert "with 2 worker(s)" in line and url in line
        workers = [w for w in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(w.cmdline())]
        assert len(workers) == 2
        with httpx.Client(base_url=url, timeout=60) as client:
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(lambda i: client.post("/v1/predict", json={"texts": TEXTS}), range(8)))
            for answer in answers:
                for text, result in zip(TEXTS, answer.json()["results"], strict=True):
                    check_same(result, expected[text])
            metrics = client.get("/metrics").text  # summed over both workers, whichever answers
            assert 'kee_requests_total{endpoint="predict",status="200"} 8.0' in metrics
    finally:
        code = stop(proc)
    assert code == 0
    assert not any(w.is_running() and w.status() != psutil.STATUS_ZOMBIE for w in workers)  # reaped or gone
    with socket.socket() as s:  # the port is free again
        s.bind(("127.0.0.1", int(url.rsplit(":", 1)[1])))


def test_serve_refuses_a_bad_store_or_model_before_starting(served, models, tmp_path):
    _, store = served
    bad = tmp_path / "models" / "x"
    shutil.copytree(models / "a" / "pretrained_external_word_embeddings", bad)
    manifest = json.loads((bad / "manifest.json").read_text())
    manifest["store"]["fingerprint"] = "0" * 64
    (bad / "manifest.json").write_text(json.dumps(manifest))
    for options in (["--store", tmp_path / "nostore", "--models", models], ["--store", store.path, "--models", bad],
                    ["--store", store.path, "--models", models, "--workers", "0"],
                    ["--store", store.path, "--models", models, "--ray", "--start-timeout", "0"]):
        done = subprocess.run([sys.executable, "-m", "external_embeddings", "serve", *map(str, options)],
                              capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert done.returncode == 2 and done.stderr.startswith("error: ") and len(done.stderr.splitlines()) == 1


def test_a_damaged_model_at_start_keeps_readyz_503_until_the_folder_is_fixed(served, models, tmp_path):
    _, store = served
    folder = tmp_path / "models"
    shutil.copytree(models / "a", folder / "a")
    good = (folder / "a" / "pretrained_external_word_embeddings" / "model.keras").read_bytes()
    (folder / "a" / "pretrained_external_word_embeddings" / "model.keras").write_bytes(b"damaged")
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "external_embeddings", "serve", "--store", str(store.path),
                             "--models", str(folder), "--port", str(port), "--poll-seconds", "0.3"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            deadline = time.monotonic() + 120  # bounds a failing test only
            answer = None
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    answer = client.get("/readyz")
                    if "damaged" in answer.text:
                        break
                except httpx.TransportError:  # not listening yet
                    pass
                time.sleep(0.2)
            assert answer is not None and answer.status_code == 503 and "is damaged" in answer.json()["error"]
            assert client.get("/healthz").status_code == 200
            assert client.post("/v1/predict", json={"texts": ["a"]}).status_code == 503
            (folder / "a" / "pretrained_external_word_embeddings" / "model.keras").write_bytes(good)
            assert proc.stdout.readline().startswith("Serving 1 models")  # once the fixed model loaded
            assert client.get("/readyz").status_code == 200
    finally:
        code = stop(proc, signal.SIGTERM)
    assert code == 0  # SIGTERM is a clean stop too
