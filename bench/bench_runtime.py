"""Issue #18: the server on ONNX Runtime vs Keras fused vs today's Keras (each model alone).

K = 8 external models (bench/common.py's untrained CNNs, exported to model.onnx when saved), 2
workers, 8 concurrent clients, micro-batching as serve's default (up to 64 texts, no wait).
Three sides, one after the other in this run, each a real ``serve`` process:

* today: ``--runtime keras --no-fuse --threads 0`` (each model its own predict_on_batch call,
  TensorFlow's own thread default), as serve ran before the runtimes;
* keras: ``--runtime keras`` (the group's models fused into one Keras model with K outputs);
* onnx: ``--runtime onnx`` (one session per model, no arena, spinning off);
* onnx arena: the same with ``KEE_ONNX_ARENA=1`` (one arena shared by the sessions).

Per side: time from start to the ready line, single-text requests and 32-text requests (texts/s,
p50/p99 ms; the load generator of bench/common.py, each phase bounded in time and requests), the sum of
the workers' PSS with the 8 models after the load, and the PSS per extra model per worker
(K = 1 vs K = 8, after a few requests). Then one worker serving K = 1 .. 100 external models on
ONNX: PSS after requests. The 100 folders are hard links to the 8 models' files: ONNX Runtime
reads each file into its own memory, so a link costs what a distinct model costs.

Run: nice python bench/bench_runtime.py [--quick] [--json FILE]
"""

import asyncio
import json
import os
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_memory  # noqa: E402
import common  # noqa: E402

K, WORKERS = 8, 2
ENV = common.SERVE_ENV
SIDES = {"today": ["--runtime", "keras", "--no-fuse", "--threads", "0"], "keras": ["--runtime", "keras"],
         "onnx": ["--runtime", "onnx"], "onnx arena": ["--runtime", "onnx"]}
SIDE_ENV = {"onnx arena": {"KEE_ONNX_ARENA": "1"}}  # ONNX with one shared arena (faster, more memory)
CURVE = [1, 8, 25, 50, 100]


def linked_models(dirs, k):
    """A folder of ``k`` external model folders, hard links to the ``len(dirs)`` distinct ones."""
    folder = common.RESULTS / "runtime" / f"external-{k}"
    if not (folder / f"m{k - 1}" / "model.onnx").exists():
        common.fresh_dir(folder)
        for i in range(k):
            (folder / f"m{i}").mkdir()
            for f in dirs[i % len(dirs)].iterdir():
                os.link(f, folder / f"m{i}" / f.name)
    return folder


def workers_pss(server):
    """Sum of PSS over the worker processes; with one worker, uvicorn serves in the process itself."""
    proc = psutil.Process(server.proc.pid)
    workers = [p for p in proc.children() if "spawn_main" in " ".join(p.cmdline())] or [proc]
    return sum(p.memory_full_info().pss for p in workers)


def after_requests(server, singles, batches):
    """PSS once a few requests of both sizes have run (the runtimes' buffers are then allocated)."""
    asyncio.run(common.load(server.url, singles, 1, 30, 16, clients=2))
    asyncio.run(common.load(server.url, batches, 32, 60, 8, clients=2))
    time.sleep(0.5)
    return workers_pss(server)


def main(argv=None):
    args = common.parse_args(__doc__.splitlines()[0], argv)
    seconds, max_requests = (3, 150) if args.quick else (10, 3000)
    curve = [1, 4] if args.quick else CURVE
    corpus = common.load_texts(2000)
    if corpus is None:
        print(f"Skipped: the 20 Newsgroups train split is not at {common.TRAIN_TAR}.")
        return common.save_json(args, {"skipped": str(common.TRAIN_TAR), "rows": []})
    store = common.glove_store()
    dirs = common.make_models(store, K)["external"]
    weights = bench_memory.cnn_bytes(dirs[0])
    store_path = store.path
    del store
    singles, batches = common.request_bodies(corpus.texts)

    runs = {}
    for side, options in SIDES.items():
        env = {**ENV, **SIDE_ENV.get(side, {})}  # the servers' environment
        server = common.Server(store_path, common.model_folder("external", dirs, K), options, env=env)
        try:
            run = {"ready_seconds": server.ready_seconds,
                   **common.load_test(server.url, singles, batches, seconds, max_requests)}
            run["pss_bytes"] = workers_pss(server)
        finally:
            server.stop()
        pss = {}
        for k in (1, K):
            server = common.Server(store_path, common.model_folder("external", dirs, k), options, env=env)
            try:
                pss[k] = after_requests(server, singles, batches)
            finally:
                server.stop()
        run["pss_k1_bytes"], run["pss_k8_bytes"] = pss[1], pss[K]
        run["per_model_per_worker_bytes"] = (pss[K] - pss[1]) / (K - 1) / WORKERS
        runs[side] = run
        print(f"{side}: {json.dumps(run)}", flush=True)

    growth = []
    for k in curve:
        server = common.Server(store_path, linked_models(dirs, k), ["--runtime", "onnx"], workers=1)
        try:
            loaded = workers_pss(server)
            growth.append({"k": k, "ready_seconds": server.ready_seconds, "pss_loaded_bytes": loaded,
                           "pss_bytes": after_requests(server, singles, batches)})
        finally:
            server.stop()
        print(f"one ONNX worker, K={k}: {json.dumps(growth[-1])}", flush=True)

    figures = {"k": K, "workers": WORKERS, "clients": common.CLIENTS, "seconds": seconds,
               "max_requests": max_requests, "texts": len(corpus.texts), "weights_bytes": weights, "runs": runs,
               "growth": growth}
    figures["rows"] = rows(figures)
    common.print_rows(f"Runtimes: K={K} external models, {WORKERS} workers, {common.CLIENTS} clients "
                      "(original = today's Keras, each model alone; external = ONNX)", figures["rows"])
    return common.save_json(args, figures)


def rows(f):
    """Today's path vs ONNX (and Keras fused beside it in the notes), each goal stated."""
    runs, mb, out = f["runs"], lambda b: f"{b / common.MB:,.1f} MB", []
    today, keras, onnx = runs["today"], runs["keras"], runs["onnx"]

    def load(run, phase):
        p = run[phase]
        return f"{p['texts_per_second']:,.1f} ({p['p50_ms']:,.0f} / {p['p99_ms']:,.0f})"

    single = onnx["single"]["texts_per_second"] / today["single"]["texts_per_second"]
    out.append(common.row("server, 1 text/request, texts/s (p50 / p99 ms)", load(today, "single"), load(onnx, "single"),
                          f"{single:,.2f}x", ">= 2.5x", single >= 2.5, f"keras fused {load(keras, 'single')}"))
    share = onnx["single"]["texts_per_second"] / onnx["batch32"]["texts_per_second"]
    out.append(common.row("server, 1 text/request vs 32 texts/request, same server, texts/s",
                          f"{today['single']['texts_per_second'] / today['batch32']['texts_per_second']:,.0%}",
                          f"{share:,.0%}", "-", ">= 80%", share >= 0.8,
                          f"keras fused {keras['single']['texts_per_second'] / keras['batch32']['texts_per_second']:,.0%}"))
    batch = onnx["batch32"]["texts_per_second"] / today["batch32"]["texts_per_second"]
    out.append(common.row("server, 32 texts/request, texts/s (p50 / p99 ms)", load(today, "batch32"),
                          load(onnx, "batch32"), f"{batch:,.2f}x", ">= 1.0x", batch >= 1.0,
                          f"keras fused {load(keras, 'batch32')}"))
    errors = {side: sum(r[p]["errors"] for p in ("single", "batch32")) for side, r in runs.items()}
    out.append(common.row("server, errors under load", errors["today"], errors["onnx"], "-", "0",
                          not any(errors.values()), f"keras fused {errors['keras']}"))
    pss = onnx["pss_bytes"] / today["pss_bytes"]
    out.append(common.row(f"server, sum of worker PSS, K={f['k']}, {f['workers']} workers", mb(today["pss_bytes"]),
                          mb(onnx["pss_bytes"]), f"{pss:,.2f}x", "<= 0.33x", pss <= 1 / 3,
                          f"keras fused {mb(keras['pss_bytes'])}"))
    per = onnx["per_model_per_worker_bytes"]
    out.append(common.row("server, PSS per extra model per worker (K=1 vs 8)", mb(today["per_model_per_worker_bytes"]),
                          mb(per), f"{per / f['weights_bytes']:,.2f}x weights", f"<= 2x weights ({mb(f['weights_bytes'])})",
                          per <= 2 * f["weights_bytes"], f"keras fused {mb(keras['per_model_per_worker_bytes'])}"))
    ready = onnx["ready_seconds"] / today["ready_seconds"]
    out.append(common.row(f"server, time from start to ready, K={f['k']} (s)", f"{today['ready_seconds']:,.1f}",
                          f"{onnx['ready_seconds']:,.1f}", f"{ready:,.2f}x", "<= 0.5x", ready <= 0.5,
                          f"keras fused {keras['ready_seconds']:,.1f}"))
    if "onnx arena" in runs:
        arena = runs["onnx arena"]
        out.append(common.row("server, ONNX with one shared arena (KEE_ONNX_ARENA=1): 1 text / 32 texts per "
                              "request, texts/s; PSS", f"{load(today, 'single')} / {load(today, 'batch32')}; "
                              f"{mb(today['pss_bytes'])}", f"{load(arena, 'single')} / {load(arena, 'batch32')}; "
                              f"{mb(arena['pss_bytes'])}",
                              f"{arena['single']['texts_per_second'] / today['single']['texts_per_second']:,.2f}x / "
                              f"{arena['batch32']['texts_per_second'] / today['batch32']['texts_per_second']:,.2f}x; "
                              f"{arena['pss_bytes'] / today['pss_bytes']:,.2f}x", "(informative)", None,
                              f"per extra model per worker {mb(arena['per_model_per_worker_bytes'])}"))
    if f["growth"]:
        last = f["growth"][-1]
        curve = ", ".join(f"K={g['k']}: {mb(g['pss_bytes'])}" for g in f["growth"])
        out.append(common.row(f"one ONNX worker, K={last['k']} models, PSS after requests", "-", mb(last["pss_bytes"]),
                              "-", "< 1 GB", last["pss_bytes"] < 1e9, curve))
    return out


if __name__ == "__main__":
    main()
