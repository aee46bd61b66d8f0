"""``score`` on a real local Ray cluster of two nodes (one CPU each), shared by every test here.

The nodes share this machine's disk, so to give one node another copy of the store, each node
gets its own HOME and the store is named ``~/store``: a ``~`` path is expanded on each node.
"""

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

# Ray rewrites a 127.0.0.1 address to the machine's network address unless it believes it runs
# on one machine only; the nodes here listen on 127.0.0.1. Set before Ray is imported.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
ray = pytest.importorskip("ray")

from conftest import ROOT, vector_rows  # noqa: E402
from external_embeddings import InputError  # noqa: E402
from external_embeddings.serving import ray_score  # noqa: E402
from external_embeddings.predictor import Predictor  # noqa: E402
from external_embeddings.store import write_store  # noqa: E402

MODELS = ["a/pretrained_external_word_embeddings", "b/pretrained_external_word_embeddings"]


@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """Two Ray nodes on 127.0.0.1 with one CPU and their own HOME each; always shut down."""
    from ray.cluster_utils import Cluster

    homes = [tmp_path_factory.mktemp("home1"), tmp_path_factory.mktemp("home2")]
    node = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "env_vars": {"HOME": str(homes[0])}})
    try:
        cluster.add_node(**node, env_vars={"HOME": str(homes[1])})
        ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.ERROR,
                 runtime_env=ray_score.package_env())
        yield cluster, homes
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.fixture(scope="module")
def models(served):
    work, store = served
    return work / "models", store


def expected(store, models_dir, texts):
    """What ``Predictor.predict`` answers in this process, for comparison."""
    return Predictor(store, models_dir).predict(texts)


def check_scores(table, texts, answers, probabilities=False):
    """Every good row's label and probability equal the predictor's; bad rows have none."""
    good = [i for i, text in enumerate(texts) if text is not None]
    assert len(answers) == len(good)
    for name in MODELS:
        labels = table[f"{name}/label"].to_pylist()
        probability = table[f"{name}/probability"].to_pylist()
        for i, answer in zip(good, answers):
            assert labels[i] == answer[name]["label"]
            assert probability[i] == pytest.approx(answer[name]["probability"], abs=1e-5)
            if probabilities:
                got = table[f"{name}/probabilities"][i].as_py()
                assert got == pytest.approx(answer[name]["probabilities"], abs=1e-5)
        assert all(labels[i] is None for i in range(len(texts)) if i not in good)


TEXTS = ["The rocket reached orbit around the moon.", "The doctor saw a patient\nwith a virus.",
         "The pitcher threw in the ninth inning and the team won.", "nasa shuttle launch to the planet",
         "hockey coach and the goal", "drug therapy in the clinic"]


@pytest.mark.parametrize("runtime", ["keras", "onnx"])
def test_score_a_text_file_from_the_command_line_equals_predict(cluster, models, tmp_path, runtime):
    models_dir, store = models
    lines = [t.replace("\n", "\\n") for t in TEXTS[:3]] + [""] + [t for t in TEXTS[3:]]
    (tmp_path / "in.txt").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode() + b"\r\n")
    done = subprocess.run([sys.executable, "-m", "external_embeddings", "score", "--store", store.path,
                           "--models", models_dir, "--input", tmp_path / "in.txt", "--output", tmp_path / "out.parquet",
                           "--address", cluster[0].address, "--probabilities", "--quiet", "--runtime", runtime],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert "Scored 6 of 7 rows with 2 models" in done.stdout and "1 bad rows (1 empty)" in done.stdout
    table = pq.read_table(tmp_path / "out.parquet")
    assert table["row"].to_pylist() == list(range(1, 8))
    assert table["error"].to_pylist() == [None] * 3 + ["empty"] + [None] * 3
    texts = TEXTS[:3] + [None] + TEXTS[3:]
    check_scores(table, texts, expected(store, models_dir, TEXTS), probabilities=True)
    assert [p.name for p in tmp_path.iterdir()] == ["in.txt", "out.parquet"] or \
        sorted(p.name for p in tmp_path.iterdir()) == ["in.txt", "out.parquet"]


@pytest.mark.parametrize("kind", ["jsonl", "parquet"])
def test_score_json_lines_and_parquet_on_both_nodes_keeps_order_and_ids(cluster, models, tmp_path, monkeypatch, kind):
    models_dir, store = models
    monkeypatch.setattr(ray_score, "BLOCK_ROWS", 2)  # several blocks, so both nodes' actors take some
    rows = [{"id": f"doc-{i}", "text": text} for i, text in enumerate(TEXTS * 3)]
    rows[4]["text"] = "   "  # empty
    ids = [row["id"] for row in rows]
    if kind == "jsonl":
        rows[7]["text"] = 42  # not a string
        del rows[9]["text"]  # no text
        for i in (2, 5):  # ids of mixed types come out as their JSON texts, so 2 and "2" stay apart
            rows[i]["id"] = i
        ids = [json.dumps(row["id"]) for row in rows]
        path = tmp_path / "in.jsonl"
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
        bad = {4: "empty", 7: "not a string (int)", 9: "no text"}
    else:
        rows[9]["text"] = None  # a null
        path = tmp_path / "in.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
        bad = {4: "empty", 9: "no text"}
    summary = ray_score.score(store.path, models_dir, path, tmp_path / "out.parquet", progress=False)
    assert summary["bad"] == {reason: 1 for reason in bad.values()}
    assert summary["scored"] == len(rows) - len(bad) and summary["models"] == 2
    table = pq.read_table(tmp_path / "out.parquet")
    assert table["row"].to_pylist() == list(range(1, len(rows) + 1))
    assert table["id"].to_pylist() == ids
    assert table["error"].to_pylist() == [bad.get(i) for i in range(len(rows))]
    texts = [None if i in bad else row["text"] for i, row in enumerate(rows)]
    check_scores(table, texts, expected(store, models_dir, [t for t in texts if t is not None]))


# ## Reading the input: ids as they went in, .json arrays


def ids_read(tmp_path, ids, suffix=".jsonl"):
    """The id column ``read_input`` makes of rows with these ids (a JSON Lines or a .json file)."""
    rows = [{"id": i, "text": "orbit"} for i in ids]
    path = tmp_path / f"in{suffix}"
    path.write_text(json.dumps(rows) if suffix == ".json" else "".join(json.dumps(row) + "\n" for row in rows))
    return ray_score.read_input(path)["id"]


@pytest.mark.parametrize("ids, kind, out", [
    ([1, 2, None, -7], pa.int64(), [1, 2, None, -7]),
    (["a", "1", None], pa.string(), ["a", "1", None]),
    ([True, False], pa.bool_(), [True, False]),
    ([2.5, 1.0], pa.float64(), [2.5, 1.0]),
    # Mixed types: each id's JSON text, so 1, 1.0, true and "1" stay four ids (Arrow made them 1.0 and "1").
    ([1, 2.5, True], pa.string(), ["1", "2.5", "true"]),
    ([1, "1", None, 1.0, "x"], pa.string(), ["1", '"1"', None, "1.0", '"x"']),
    # Beyond int64 (Python's int had no Arrow type: OverflowError), lists and objects: JSON text too.
    ([1, 2**64 + 1, -2**63 - 1], pa.string(), ["1", str(2**64 + 1), str(-2**63 - 1)]),
    ([2**63 - 1, -2**63], pa.int64(), [2**63 - 1, -2**63]),
    ([[1, 2], {"a": 1}, {"a": 1, "b": None}], pa.string(), ["[1, 2]", '{"a": 1}', '{"a": 1, "b": null}']),
    (["caf\u00e9", "\u6f22"], pa.string(), ["caf\u00e9", "\u6f22"]),
])
@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_ids_come_out_as_they_went_in_or_as_their_json_text_never_merged(tmp_path, ids, kind, out, suffix):
    column = ids_read(tmp_path, ids, suffix)
    assert column.type == kind and column.to_pylist() == out
    assert len({i for i in out if i is not None}) == len([i for i in ids if i is not None])


@pytest.mark.parametrize("suffix, where", [(".jsonl", "in.jsonl:2: "), (".json", "in.json: item 2: ")])
def test_an_id_that_is_a_lone_surrogate_is_one_error_naming_its_row(tmp_path, suffix, where):
    with pytest.raises(InputError) as raised:
        ids_read(tmp_path, ["fine", "\ud800", "also fine"], suffix)
    assert str(raised.value).startswith(f"{tmp_path}/{where}has an id that is not valid Unicode")
    assert "has an id that is not valid Unicode ('\\ud800', a lone surrogate)" in str(raised.value)


def test_a_json_file_is_read_as_an_array_of_objects_not_as_lines(tmp_path):
    """Read as lines, a .json file's keys and brackets became texts and its ids were lost."""
    path = tmp_path / "in.json"
    path.write_text(json.dumps([{"id": "a", "text": "orbit rocket"}, {"text": "doctor"}, 7,
                                {"id": "d", "text": "  "}], indent=2))
    table = ray_score.read_input(path)
    assert table["row"].to_pylist() == [1, 2, 3, 4] and table["id"].to_pylist() == ["a", None, None, "d"]
    assert table["text"].to_pylist() == ["orbit rocket", "doctor", None, None]
    assert table["error"].to_pylist() == [None, None, "no text", "empty"]
    for content, message in (('{"text": "a"}', "holds a JSON dict, not an array of objects"),
                             ('[{"text": "a"},', "is not JSON (Expecting value"), ("[]", "holds no rows")):
        path.write_text(content)
        with pytest.raises(InputError, match=__import__("re").escape(f"{path}: {message}")):
            ray_score.read_input(path)


@pytest.fixture(scope="module")
def node_stores(cluster, models):
    """``~/store`` on each node: the head node's is the driver's store, the other node's has other vectors."""
    (_, homes), (_, store) = cluster, models
    shutil.copytree(store.path, homes[0] / "store")
    rows = vector_rows(seed=5)
    write_store([w for w, _ in rows], np.array([v for _, v in rows], dtype=np.float32), homes[1] / "store",
                {"file": "other"})
    return homes


REFUSED = r"store on node 127\.0\.0\.1: has fingerprint \w+, the driver's copy has"


def test_a_node_whose_store_has_another_fingerprint_is_refused(node_stores, models, tmp_path, monkeypatch):
    homes, (models_dir, _) = node_stores, models
    monkeypatch.setenv("HOME", str(homes[0]))
    monkeypatch.setattr(ray_score, "BLOCK_ROWS", 1)  # a block for each node's actor
    (tmp_path / "in.txt").write_text("orbit rocket\ndoctor patient\n")
    with pytest.raises(InputError, match=REFUSED):
        ray_score.score("~/store", models_dir, tmp_path / "in.txt", tmp_path / "out.parquet", progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.txt"]  # nothing half-written


def run_score(*args):
    return subprocess.run([sys.executable, "-m", "external_embeddings", "score", *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT)


@pytest.mark.parametrize("name, content, message", [
    ("in.jsonl", b'{"text": "fine"}\n{"text": "cut\n', r"in\.jsonl:2: is not JSON Lines"),
    ("in.txt", b"fine\n\xff\xfe\n", r"in\.txt:2: is not UTF-8"),
    ("in.parquet", b"PAR1 not really", r"in\.parquet: is not a readable Parquet file"),
    ("in.csv", b"", r"in\.csv: holds no rows"),
    ("in.jsonl", b'{"text": "fine"}\n{"id": "\\ud800", "text": "x"}\n', r"in\.jsonl:2: has an id that is not valid"),
    ("in.json", b'{"text": "fine"}', r"in\.json: holds a JSON dict, not an array of objects"),
])
def test_a_bad_input_file_is_one_error_before_ray_starts(models, tmp_path, name, content, message):
    models_dir, store = models
    (tmp_path / name).write_bytes(content)
    done = run_score("--store", store.path, "--models", models_dir, "--input", tmp_path / name,
                     "--output", tmp_path / "out.parquet", "--address", "127.0.0.1:1")  # never reached
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("error: ")
    assert __import__("re").search(message, done.stderr), done.stderr
    assert not (tmp_path / "out.parquet").exists()


def test_score_refuses_an_existing_output_and_a_parquet_without_text(models, tmp_path):
    models_dir, store = models
    (tmp_path / "out.parquet").write_bytes(b"keep me")
    with pytest.raises(InputError, match="out.parquet: already exists; choose another --output"):
        ray_score.score(store.path, models_dir, tmp_path / "none.txt", tmp_path / "out.parquet")
    assert (tmp_path / "out.parquet").read_bytes() == b"keep me"
    pq.write_table(pa.table({"body": ["a"]}), tmp_path / "in.parquet")
    with pytest.raises(InputError, match=r"has no column 'text' \(its columns: body\)"):
        ray_score.score(store.path, models_dir, tmp_path / "in.parquet", tmp_path / "new.parquet")
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "ints.parquet")
    with pytest.raises(InputError, match="has a 'text' column of int64, not of strings"):
        ray_score.score(store.path, models_dir, tmp_path / "ints.parquet", tmp_path / "new.parquet")


# Ray Serve: the single-machine server's app as a deployment, compared with that app itself.

TOKEN = "s3cret"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def serve_settings(models):
    models_dir, store = models
    return {"KEE_SERVE_STORE": str(store.path), "KEE_SERVE_MODELS": str(models_dir), "KEE_SERVE_TOKEN": TOKEN,
            "KEE_SERVE_MAX_TEXTS": "8", "KEE_SERVE_POLL_SECONDS": "0", "KEE_SERVE_BODY_TIMEOUT": "2"}


def test_a_serve_replica_on_a_node_whose_store_has_another_fingerprint_refuses_to_start(node_stores, models,
                                                                                        serve_settings):
    """Two replicas, one per node (one CPU each): the other node's replica refuses, and so does start.

    Before the ``ray_server`` fixture below, which deploys the app under the same name."""
    from ray import serve

    from external_embeddings.serving import ray_serve
    from test_server import free_port

    try:
        with pytest.raises(InputError, match=REFUSED):
            ray_serve.start({**serve_settings, "KEE_SERVE_STORE": "~/store"}, models[1].fingerprint, 2, "127.0.0.1",
                            free_port(), proxies="HeadOnly")
    finally:
        serve.shutdown()


def test_serve_ray_gives_the_replicas_a_home_path_as_each_node_reads_it(node_stores, models, monkeypatch):
    """serve --ray leaves ``~`` for each node to expand (as score does), so each replica checks its own copy."""
    from external_embeddings import cli
    from external_embeddings.serving import ray_serve

    seen = {}
    monkeypatch.setattr(ray_serve, "serve_until_stopped", lambda settings, *rest: seen.update(settings))
    monkeypatch.setenv("HOME", str(node_stores[0]))
    cli.main(["serve", "--ray", "--store", "~/store", "--models", str(models[0])])
    assert seen["KEE_SERVE_STORE"] == "~/store" and seen["KEE_SERVE_MODELS"] == str(models[0].resolve())


def test_serve_ray_refuses_more_replicas_than_the_cluster_has_cpus(cluster, models, serve_settings):
    """Three replicas of one CPU on two one-CPU nodes: one clear error at once, before deploying."""
    from external_embeddings.serving import ray_serve
    from test_server import free_port

    started = time.monotonic()
    with pytest.raises(InputError, match=r"asks for 3 replicas of one CPU each, but the Ray cluster has 2 CPUs; "
                                         r"ask for at most 2 replicas, or add nodes"):
        ray_serve.start(serve_settings, models[1].fingerprint, 3, "127.0.0.1", free_port(), proxies="HeadOnly")
    assert time.monotonic() - started < 5


def test_serve_ray_with_more_replicas_than_cpus_exits_at_once_and_stops_the_ray_it_started(models):
    """The command as a user runs it, with a private Ray: one error line, exit status 2, no
    traceback, long before the start timeout, and none of the Ray processes it started left.

    Its Ray gets a temporary directory of its own (RAY_TMPDIR), so that its processes are told
    apart from any other Ray on this machine by their command lines."""
    import psutil

    from test_server import free_port

    models_dir, store = models
    replicas = os.cpu_count() + 1
    ray_tmp = Path(tempfile.mkdtemp(prefix="kee-ray-", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    started = time.monotonic()
    try:
        done = subprocess.run([sys.executable, "-m", "external_embeddings", "serve", "--ray", "--store",
                               str(store.path), "--models", str(models_dir), "--port", str(free_port()), "--replicas",
                               str(replicas)], capture_output=True, text=True, cwd=ROOT, timeout=300,
                              env={**os.environ, "RAY_TMPDIR": str(ray_tmp)})
        assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.strip().splitlines() == [
            f"error: --replicas {replicas}: asks for {replicas} replicas of one CPU each, but the Ray cluster has "
            f"{os.cpu_count()} CPUs; ask for at most {os.cpu_count()} replicas, or add nodes"]
        assert "Serving" not in done.stdout
        assert time.monotonic() - started < 120  # Ray's start-up; the timeout is 600 s
        assert len(list(ray_tmp.glob("ray/session_2*"))) == 1  # it started a Ray of its own, not joined the tests'

        def left():
            return [p.pid for p in psutil.process_iter(["cmdline", "status"]) if p.info["status"] !=
                    psutil.STATUS_ZOMBIE and str(ray_tmp) in " ".join(p.info["cmdline"] or [])]

        deadline = time.monotonic() + 30
        while left():  # ray.shutdown() ends them; give them a moment to exit
            assert time.monotonic() < deadline, f"Ray processes left running: {left()}"
            time.sleep(0.5)
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def test_a_replica_that_no_node_has_room_for_ends_the_wait_with_an_error(cluster, models, serve_settings,
                                                                         monkeypatch):
    """One CPU held by another actor: the second replica cannot be placed. The wait ends at its
    timeout, naming what is pending, or as soon as Ray Serve reports the replica unplaceable."""
    from ray import serve

    from external_embeddings.serving import ray_serve
    from test_server import free_port

    monkeypatch.setattr(ray_serve, "UNPLACED_S", 3)  # 30 s by default; Serve's controller reads it at its start

    @ray.remote(num_cpus=1)
    class Holder:
        def ping(self):
            return True

    holder = Holder.remote()
    ray.get(holder.ping.remote())
    try:
        with pytest.raises(InputError, match=r"^serve --ray: not ready after 1 s \((server: \w+|Serve has not "
                                             r"reported the application yet).*\); check `ray status`"):
            ray_serve.start(serve_settings, models[1].fingerprint, 2, "127.0.0.1", free_port(), proxies="HeadOnly",
                            timeout_s=1)
        started = time.monotonic()
        with pytest.raises(InputError, match=r"^serve --ray: Ray cannot place every replica \(.*to be scheduled.*\); "
                                             r"ask for fewer --replicas, free the CPUs .* or add nodes$"):
            ray_serve.wait_until_running(time.monotonic() + 60)
        assert time.monotonic() - started < 45  # Serve reports it 3 s after the replica's start; ~15 s here, loaded
    finally:
        serve.shutdown()
        ray.kill(holder)


def test_a_replica_that_fails_for_another_reason_is_one_error_line_not_a_traceback(cluster, models, serve_settings):
    """A replica whose start fails with an error that is not the user's (here a KeyError: no store
    setting) fails the deployment after Serve's retries; the reason is the exception's last line."""
    from ray import serve

    from external_embeddings.serving import ray_serve
    from test_server import free_port

    settings = {k: v for k, v in serve_settings.items() if k != "KEE_SERVE_STORE"}
    try:
        with pytest.raises(InputError, match=r"^serve --ray: Ray Serve could not start the replicas \(KeyError: "
                                             r"'KEE_SERVE_STORE'\); see the replicas' logs"):
            ray_serve.start(settings, models[1].fingerprint, 1, "127.0.0.1", free_port(), proxies="HeadOnly",
                            timeout_s=120)
    finally:
        serve.shutdown()


def test_the_wait_for_readyz_ends_at_the_deadline_with_its_last_answer():
    """A proxy whose /readyz keeps answering 503 (models that do not load): the wait gives up at
    its deadline, once, with the answer, rather than waiting for the folder to be fixed."""
    import http.server
    import threading

    from external_embeddings.serving import ray_serve

    class NotReady(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b'{"error": "not ready: a/model.keras cannot be loaded"}'
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotReady) as proxy:
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        started = time.monotonic()
        try:
            with pytest.raises(TimeoutError, match=r"/readyz answers 503: .*not ready: a/model\.keras cannot be"):
                ray_serve.wait_until_ready("127.0.0.1", proxy.server_address[1], TOKEN, started + 1,
                                           poll_seconds=0.1)
        finally:
            proxy.shutdown()
    assert time.monotonic() - started < 5


@pytest.fixture(scope="module")
def ray_server(cluster, models, serve_settings):
    """One replica of the app on the cluster, answering on a free port of 127.0.0.1."""
    import httpx
    from ray import serve

    from external_embeddings.serving import ray_serve
    from test_server import free_port

    url = f"http://127.0.0.1:{free_port()}"
    try:
        ray_serve.start(serve_settings, models[1].fingerprint, 1, "127.0.0.1", int(url.rsplit(":", 1)[1]),
                        proxies="HeadOnly")
        with httpx.Client(base_url=url, headers=AUTH, timeout=60) as client:
            client.first_readyz = client.get("/readyz")  # at once: serve --ray prints "Serving" when start returns
            yield client
    finally:
        serve.shutdown()


def wait_until_ready(client, seconds=120):
    import httpx

    deadline = time.monotonic() + seconds
    while True:
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the Ray Serve replica did not become ready"
        time.sleep(0.5)


REQUESTS = [("post", "/v1/predict", {"texts": TEXTS}, AUTH), ("post", "/v1/predict", {"texts": TEXTS[:2],
            "models": [MODELS[1]], "top_k": 2}, AUTH), ("post", "/v1/predict", {"texts": ["a", 3]}, AUTH),
            ("post", "/v1/predict", {"texts": TEXTS + TEXTS}, AUTH), ("post", "/v1/predict", {"texts": ["x"]}, {}),
            ("get", "/v1/models", None, AUTH), ("get", "/v1/nowhere", None, AUTH), ("get", "/v1/predict", None, AUTH)]


def test_serve_ray_starts_once_the_models_are_loaded(ray_server):
    """start returns (and the command prints "Serving") only when the app answers: the first
    /readyz, sent as soon as start returned, is 200 with both models loaded."""
    assert ray_server.first_readyz.status_code == 200, ray_server.first_readyz.text
    assert ray_server.first_readyz.json()["ready"] is True and ray_server.first_readyz.json()["models"] == len(MODELS)


def test_ray_serve_answers_as_the_single_machine_server(ray_server, serve_settings, monkeypatch):
    from starlette.testclient import TestClient

    from external_embeddings.serving.app import create_app

    for name, value in serve_settings.items():
        monkeypatch.setenv(name, value)
    with TestClient(create_app(), base_url="http://local", headers=AUTH) as local:
        wait_until_ready(local)
        for method, path, body, headers in REQUESTS:
            options = {"headers": {**headers, "Authorization": headers.get("Authorization", "")}}
            if body is not None:
                options["json"] = body
            mine, theirs = ray_server.request(method, path, **options), local.request(method, path, **options)
            assert mine.status_code == theirs.status_code, (method, path, mine.text)
            mine, theirs = mine.json(), theirs.json()
            if path == "/v1/models":  # the process that answered: its pid and threads are its own
                assert mine.pop("worker")["threads"] == 1 and theirs.pop("worker")["pid"] == os.getpid()
            assert mine == approx_json(theirs), (method, path)


def approx_json(value):
    """Floats equal to 1e-5 (two processes may round the last bits of a model's output apart)."""
    if isinstance(value, float):
        return pytest.approx(value, abs=1e-5)
    if isinstance(value, dict):
        return {k: approx_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [approx_json(v) for v in value]
    return value


def test_a_killed_replica_is_restarted_and_a_retried_request_succeeds(ray_server):
    import httpx

    before = ray_server.post("/v1/predict", json={"texts": TEXTS}).json()
    pid = ray_server.get("/healthz").json()["worker"]
    os.kill(pid, signal.SIGKILL)
    deadline, answer = time.monotonic() + 120, None
    while answer is None or answer.status_code != 200:  # the client's retry
        assert time.monotonic() < deadline, "no replica answered after the kill"
        try:
            answer = ray_server.post("/v1/predict", json={"texts": TEXTS})
        except httpx.HTTPError:
            pass
        if answer is None or answer.status_code != 200:
            time.sleep(0.5)
    assert answer.json() == approx_json(before)
    assert ray_server.get("/healthz").json()["worker"] != pid


def test_serve_ray_answers_a_trickled_body_with_a_408_through_serves_proxy(ray_server):
    """The app's --body-timeout holds behind Ray Serve's proxy too, which streams the body to the
    replica. (The proxy's own idle and slow-header connections are a reverse proxy's job: docs/security.md.)"""
    from test_server_limits import BODY_HEAD, read_response, trickle

    sock = socket.create_connection(("127.0.0.1", ray_server.base_url.port), timeout=10)
    sock.sendall(BODY_HEAD.replace(b"Host: x\r\n", f"Host: x\r\nAuthorization: Bearer {TOKEN}\r\n".encode()))
    took = trickle(sock, 20)
    head, body = read_response(sock)
    sock.close()
    assert head.startswith("HTTP/1.1 408") and "--body-timeout" in json.loads(body)["error"] and took < 10
