"""Issue 10: Ray Serve against the single-machine server, 2 replicas vs 2 uvicorn workers.

Both sides are a real ``serve`` process on a free port of 127.0.0.1 with the same K = 8
external models and store as bench_serve.py, and default micro-batching: ``serve --workers 2``
(uvicorn), and ``serve --ray --replicas 2`` (a private local Ray instance that the command
starts on 127.0.0.1 and stops, 2 replicas of one CPU each behind Ray Serve's HTTP proxy). Each
gets the load test of bench_serve.py (in common.py): its warm-up, then 8 concurrent httpx asyncio clients sending
real 20 Newsgroups train texts, one text per request, then 32, each phase for a fixed time
and at most a fixed number of requests. Reported: throughput and p50/p99 latency side by side
(Ray Serve / uvicorn), errors, and the time until every worker or replica answers /readyz.

The sides alternate (uvicorn, Ray, Ray, uvicorn; --quick: one of each) and each figure is the
median over a side's runs. The 2 cores are shared by the clients, both workers or replicas,
Ray's own processes and other work on the machine.

Run: python bench/bench_ray_serve.py [--quick] [--json FILE]
"""

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

SIDES = {"uvicorn": [], "ray": ["--ray", "--replicas", str(common.WORKERS)]}
PHASES = (("single", "1 text"), ("batch32", "32 texts"))


def run_side(side, store_path, models, singles, batches, seconds, max_requests):
    started = time.perf_counter()
    server = common.Server(store_path, models, SIDES[side])
    try:
        common.wait_ready(server.url)
        return {"ready_seconds": time.perf_counter() - started,
                **common.load_test(server.url, singles, batches, seconds, max_requests)}
    finally:
        server.stop()


def main(argv=None):
    args = common.parse_args(__doc__.splitlines()[0], argv)
    seconds, max_requests, rounds = (3, 200, 1) if args.quick else (10, 3000, 2)
    corpus = common.load_texts(2000)
    if corpus is None:
        print(f"Skipped: the 20 Newsgroups train split is not at {common.TRAIN_TAR}.")
        return common.save_json(args, {"skipped": str(common.TRAIN_TAR), "rows": []})
    store = common.glove_store()
    models = common.model_folder("external", common.make_models(store)["external"], common.K)
    store_path = store.path
    del store
    singles, batches = common.request_bodies(corpus.texts)
    runs = {side: [] for side in SIDES}
    for r in range(rounds):
        for side in (list(SIDES) if r % 2 == 0 else list(SIDES)[::-1]):
            runs[side].append(run_side(side, store_path, models, singles, batches, seconds, max_requests))
            print(f"{side}: {runs[side][-1]}", flush=True)
    figures = {"workers": common.WORKERS, "k": common.K, "clients": common.CLIENTS,
               "seconds": seconds, "max_requests": max_requests, "rounds": rounds, "runs": runs}
    figures["rows"] = rows(runs)
    common.print_rows(f"Ray Serve ({common.WORKERS} replicas, 'external') vs uvicorn ({common.WORKERS} "
                      f"workers, 'original'), K={common.K}, {common.CLIENTS} clients", figures["rows"])
    return common.save_json(args, figures)


def rows(runs):
    """Throughput and p99 side by side (Ray Serve / uvicorn, medians over the runs), errors, time to ready."""
    def median(side, phase, key):
        return statistics.median(run[phase][key] if phase else run[key] for run in runs[side])

    out = []
    for phase, unit in PHASES:
        (uv_rate, uv_p50, uv_p99), (ray_rate, ray_p50, ray_p99) = (
            [median(side, phase, key) for key in ("texts_per_second", "p50_ms", "p99_ms")] for side in SIDES)
        out.append(common.row(f"Ray Serve vs uvicorn, {unit}/request, texts/s", f"{uv_rate:,.1f}", f"{ray_rate:,.1f}",
                              f"{ray_rate / uv_rate:,.2f}x", "(reported)", None))
        out.append(common.row(f"Ray Serve vs uvicorn, {unit}/request, p99 latency (ms)", f"{uv_p99:,.0f}",
                              f"{ray_p99:,.0f}", f"{ray_p99 / uv_p99:,.2f}x", "(reported)", None,
                              f"p50 {uv_p50:,.0f} vs {ray_p50:,.0f} ms"))
    errors = {side: sum(run[phase]["errors"] for run in runs[side] for phase, _ in PHASES) for side in SIDES}
    requests = sum(run[phase]["requests"] for side in SIDES for run in runs[side] for phase, _ in PHASES)
    out.append(common.row("Ray Serve vs uvicorn, errors under load", errors["uvicorn"], errors["ray"], "-", "0",
                          not any(errors.values()), f"of {requests:,} requests"))
    out.append(common.row("Ray Serve vs uvicorn, time to ready (s)", f"{median('uvicorn', None, 'ready_seconds'):,.1f}",
                          f"{median('ray', None, 'ready_seconds'):,.1f}", "-", "(informative)", None,
                          "Ray's includes starting Ray"))
    return out


if __name__ == "__main__":
    main()
