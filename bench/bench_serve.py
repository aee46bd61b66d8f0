"""Issue #8: the HTTP server with K = 8 models and 2 workers, external (one store) vs baseline.

Each side is the same 8 CNNs (bench/common.py's untrained models): external models reading the
store, or baseline models each with its 20,000-word embedding and word index. For each side and
with micro-batching on (``--batch-texts 256`` or ``64``, ``--batch-wait-ms 0``) and off (``--batch-texts 0``),
a real ``serve`` process is started, and C concurrent httpx asyncio clients send real 20 Newsgroups
train texts, first one text per request, then 32, each phase for a fixed time and at most a fixed
number of requests. Reported: throughput, p50/p99 latency, errors, time to ready, and the sum of
PSS over the worker processes. Then memory as K grows (1, 2, 4, 8, 16) with batching on: the
workers' summed PSS once the models are loaded, and again after a few requests (which map the
store's pages of the words they use, and leave TensorFlow's buffers behind).

The machine has 2 cores shared by the clients and both workers: absolute figures are modest;
the two sides run alike, one after the other.

Run: python bench/bench_serve.py [--quick]
"""

import asyncio
import gc
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_memory  # noqa: E402
import common  # noqa: E402

WORKERS, K, CLIENTS = 2, 8, 8
# Fewer glibc malloc arenas: without this, which thread's arena holds TensorFlow's freed
# temporaries swings a worker's memory by tens of MB, hiding the MBs per model measured here.
# serve --ray (bench_ray_serve.py) keeps its local Ray on 127.0.0.1 (see README).
ENV = {**common.ENV, "MALLOC_ARENA_MAX": "2", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
MODES = {"on256": ["--batch-texts", "256", "--batch-wait-ms", "0"], "on64": ["--batch-texts", "64", "--batch-wait-ms", "0"],
         "off": ["--batch-texts", "0"]}
DEFAULT = "on64"  # what serve does without options (its --batch-texts default)


def model_folder(kind, dirs, k):
    """A folder of the first ``k`` models of ``kind`` (hard links: no copies on disk)."""
    folder = common.RESULTS / "serve" / f"{kind}-{k}"
    if not (folder / f"m{k - 1}" / "model.onnx").exists():  # made before model.onnx: again
        common.fresh_dir(folder)
        for d in dirs[:k]:
            (folder / d.name).mkdir()
            for f in d.iterdir():
                os.link(f, folder / d.name / f.name)
    return folder


class Server:
    """A real ``serve`` process; ``ready_seconds`` is from start to its ready line."""

    def __init__(self, store_path, models, options=()):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "external_embeddings", "serve", "--store", str(store_path),
                                      "--models", str(models), "--port", str(port), "--workers", str(WORKERS),
                                      "--poll-seconds", "0", *options], env=ENV, cwd=common.ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        self.ready_seconds = time.perf_counter() - started
        if not line.startswith("Serving"):
            self.stop()
            raise RuntimeError(f"the server did not start (exit code {self.proc.returncode}): {line}")

    def pss(self):
        """Sum of PSS over the worker processes (a page shared by both counts once in all)."""
        workers = [p for p in psutil.Process(self.proc.pid).children() if "spawn_main" in " ".join(p.cmdline())]
        return sum(p.memory_full_info().pss for p in workers)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(2)  # Ctrl-C: a clean shutdown
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                for p in psutil.Process(self.proc.pid).children(recursive=True):
                    p.kill()
                self.proc.kill()
                self.proc.wait()


async def load(url, bodies, texts_per_body, seconds, max_requests, clients=CLIENTS):
    """C clients, each sending the next body as soon as its last answer came, until the time or
    the request count is up. Returns throughput, latency percentiles and errors."""
    import httpx

    latencies, errors, sent = [], 0, 0
    deadline = time.perf_counter() + seconds

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=clients)) as client:
        async def client_loop(i):
            nonlocal errors, sent
            while time.perf_counter() < deadline and sent < max_requests:
                body, sent = bodies[sent % len(bodies)], sent + 1
                started = time.perf_counter()
                try:
                    answer = await client.post("/v1/predict", content=body,
                                               headers={"Content-Type": "application/json"})
                    ok = answer.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(client_loop(i) for i in range(clients)))
        elapsed = time.perf_counter() - started
    ms = np.array(latencies or [np.nan]) * 1000
    return {"requests": len(latencies) + errors, "errors": errors, "seconds": elapsed,
            "requests_per_second": len(latencies) / elapsed, "texts_per_second": len(latencies) * texts_per_body / elapsed,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def warm_up(url, singles, batches):
    """The same concurrent requests as the load, a few of each, so that both workers have run
    every model on merged batches of several sizes (Keras traces a new shape a few times)."""
    asyncio.run(load(url, singles, 1, 60, 6 * CLIENTS))
    asyncio.run(load(url, batches, 32, 60, 2 * CLIENTS))


def request_bodies(texts):
    """The load's request bodies: each text alone, and the texts in batches of 32."""
    singles = [json.dumps({"texts": [t]}).encode() for t in texts]
    batches = [json.dumps({"texts": texts[i:i + 32]}).encode() for i in range(0, len(texts) - 31, 32)]
    return singles, batches


def load_test(url, singles, batches, seconds, max_requests):
    """The warm-up, then the load test's two phases: one text per request, then 32."""
    warm_up(url, singles, batches)
    return {phase: asyncio.run(load(url, bodies, n, seconds, max_requests))
            for phase, bodies, n in (("single", singles, 1), ("batch32", batches, 32))}


def main(argv=None):
    args = common.parse_args(__doc__.splitlines()[0], argv)
    seconds, max_requests = (3, 200) if args.quick else (10, 3000)
    ks = [1, 2] if args.quick else [1, 2, 4, 8, 16]
    corpus = common.load_texts(2000)
    if corpus is None:
        print(f"Skipped: the 20 Newsgroups train split is not at {common.TRAIN_TAR}.")
        return common.save_json(args, {"skipped": str(common.TRAIN_TAR), "rows": []})
    store = common.glove_store()
    dirs = common.make_models(store, max(ks + [K]))
    cnn = bench_memory.cnn_bytes(dirs["external"][0])
    embedding = common.NUM_WORDS * store.dim * 4
    index_bytes = (dirs["baseline"][0] / "word_index.json").stat().st_size
    store_path = store.path
    del store  # this process must not share the store's pages with the workers
    gc.collect()
    texts = corpus.texts
    singles, batches = request_bodies(texts)

    runs = {}
    for kind in ("external", "baseline"):
        for mode, options in MODES.items():
            server = Server(store_path, model_folder(kind, dirs[kind], K), options)
            try:
                run = {"ready_seconds": server.ready_seconds,
                       **load_test(server.url, singles, batches, seconds, max_requests)}
                run["pss_bytes"] = server.pss()
                runs[f"{kind}/{mode}"] = run
                print(f"{kind}, batching {mode}: {json.dumps(run)}", flush=True)
            finally:
                server.stop()

    pss, pss_loaded, ready = ({kind: [] for kind in ("baseline", "external")} for _ in range(3))
    for k in ks:
        for kind in pss:
            server = Server(store_path, model_folder(kind, dirs[kind], k))
            try:
                time.sleep(1)  # the workers' last start-up allocations settle
                pss_loaded[kind].append(server.pss())
                # Two clients, one after the other: batch sizes, and so TensorFlow's buffers, as
                # alike as they can be from one K to the next.
                asyncio.run(load(server.url, batches, 32, 60, 8, clients=2))
                pss[kind].append(server.pss())
                ready[kind].append(server.ready_seconds)
            finally:
                server.stop()
        print(f"K={k}: PSS baseline {pss['baseline'][-1] / common.MB:,.0f} MB, "
              f"external {pss['external'][-1] / common.MB:,.0f} MB", flush=True)
    figures = {"workers": WORKERS, "k": K, "clients": CLIENTS, "seconds": seconds, "max_requests": max_requests,
               "texts": len(texts), "runs": runs, "ks": ks, "pss": pss, "pss_loaded": pss_loaded, "ready_seconds": ready, "cnn_bytes": cnn,
               "embedding_bytes": embedding, "word_index_bytes": index_bytes}
    figures["rows"] = rows(figures)
    common.print_rows(f"Serving K={K} models with {WORKERS} workers, {CLIENTS} clients", figures["rows"])
    return common.save_json(args, figures)


def rows(f):
    """Side-by-side rows: load (batching on), the gain of batching, ready time, PSS and its growth."""
    runs, out, mb = f["runs"], [], lambda b: f"{b / common.MB:,.1f} MB"
    for phase, unit in (("single", "1 text"), ("batch32", "32 texts")):
        base, ext = runs[f"baseline/{DEFAULT}"][phase], runs[f"external/{DEFAULT}"][phase]
        ratio = ext["texts_per_second"] / base["texts_per_second"]
        out.append(common.row(f"server, {unit}/request, texts/s (p50 / p99 ms)",
                              f"{base['texts_per_second']:,.1f} ({base['p50_ms']:,.0f} / {base['p99_ms']:,.0f})",
                              f"{ext['texts_per_second']:,.1f} ({ext['p50_ms']:,.0f} / {ext['p99_ms']:,.0f})",
                              f"{ratio:,.2f}x", ">= 1.0x", ratio >= 1.0))
        for kind in ("baseline", "external"):
            off = runs[f"{kind}/off"][phase]
            for mode in (m for m in MODES if m != "off"):
                on = runs[f"{kind}/{mode}"][phase]
                gain = on["texts_per_second"] / off["texts_per_second"]
                out.append(common.row(f"server, {kind}, {unit}/request: micro-batching up to {mode[2:]} texts vs "
                                      "off, texts/s", f"off {off['texts_per_second']:,.1f}",
                                      f"on {on['texts_per_second']:,.1f}", f"{gain:,.2f}x", "stated", None,
                                      f"p50 {off['p50_ms']:,.0f} -> {on['p50_ms']:,.0f} ms, "
                                      f"p99 {off['p99_ms']:,.0f} -> {on['p99_ms']:,.0f} ms"))
    errors = {kind: sum(r[p]["errors"] for name, r in runs.items() if name.startswith(kind) for p in ("single", "batch32"))
              for kind in ("baseline", "external")}
    requests = sum(r[p]["requests"] for r in runs.values() for p in ("single", "batch32"))
    out.append(common.row("server, errors under load", errors["baseline"], errors["external"], "-", "0",
                          not any(errors.values()), f"of {requests:,} requests"))
    out.append(common.row(f"server, time to ready, K={f['k']} (s)", f"{runs[f'baseline/{DEFAULT}']['ready_seconds']:,.1f}",
                          f"{runs[f'external/{DEFAULT}']['ready_seconds']:,.1f}", "-", "(informative)", None))
    ks, k, limit = f["ks"], f["ks"][-1], 1.2 * f["cnn_bytes"] * f["workers"]
    for when, key in (("models loaded", "pss_loaded"), ("after 8 requests of 32 texts", "pss")):
        base, ext = f[key]["baseline"], f[key]["external"]
        (slope_b, start_b), (slope_e, start_e) = bench_memory.line(ks, base), bench_memory.line(ks, ext)
        cross = (start_e - start_b) / (slope_b - slope_e) if slope_b > slope_e else None
        cross = "" if cross is None else f"the lines cross at K ~ {cross:,.0f}" if cross > 1 else \
            "the external line is lower from K = 1"
        out.append(common.row(f"server, sum of worker PSS, {when}, K={k}, {f['workers']} workers", mb(base[-1]),
                              mb(ext[-1]), f"{ext[-1] / base[-1]:,.2f}x", "(informative)", None, cross))
        out.append(common.row(f"server, sum of worker PSS per extra model, {when}", mb(slope_b), mb(slope_e),
                              f"{slope_e / slope_b:,.2f}x", f"external <= 1.2 x CNN x workers = {mb(limit)}",
                              slope_e <= limit, f"baseline also pays embedding {mb(f['embedding_bytes'])} and word "
                              f"index ({mb(f['word_index_bytes'])} on disk) per worker"))
    return out


if __name__ == "__main__":
    main()
