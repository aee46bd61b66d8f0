"""Offline scoring on Ray: ``score`` on 1 node x 1 CPU vs 2 nodes x 1 CPU, and both vs ``predict``.

The real train split, repeated to 100,000 texts (10,000 with --quick), written once as a text
file (one text per line, newlines as ``\\n``), is scored with K = 4 external models (untrained:
weights do not change speed) on the packaged GloVe 6B 50d store, like for like in CPUs:

* ``predict --json --file`` in one process pinned to one core (TensorFlow sizes its thread
  pools from the CPU affinity, so it runs on that core alone), and unpinned, on every core, as
  an informative figure;
* ``score --address`` on a local Ray cluster (``ray.cluster_utils.Cluster`` on 127.0.0.1) of
  1 node with 1 CPU, then of 2 nodes with 1 CPU each: one actor per CPU, one TF thread each.
  Each node is pinned to a core of its own (the first, then the second): its raylet and every
  process it starts inherit the affinity this process has when the node is added. The ``score``
  driver is pinned to the first core too, so 1 node x 1 CPU runs on the one core that
  ``predict`` gets, Ray's own processes included.

Each figure is the command's wall time, start-up included (TensorFlow, and for score the
actors' start), as a user waits for it. Goals (issue 10): 2 nodes >= 1.7x the throughput of
1 node; Ray's overhead on 1 node <= 15% against predict, both on one core. The machine has 2
cores shared with other work: pinning keeps the sides apart from each other, not from that.

Run: python bench/bench_ray.py [--quick] [--json FILE]
"""

import contextlib
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

K = 4
WORK = common.RESULTS / "ray"
CORES = sorted(os.sched_getaffinity(0))  # node i goes on CORES[i]; 1 node, the driver and predict on CORES[0]


def texts_file(count):
    """The train split's texts repeated to ``count``, one a line, escaped as predict --file reads them."""
    path = WORK / f"texts-{count}.txt"
    if not path.exists():
        corpus = common.load_texts()
        texts = corpus.texts if corpus else common.generated_texts(common.glove_store(), 2000)
        lines = [t.replace("\\", "\\\\").replace("\n", "\\n") for t in texts]
        partial = path.with_suffix(".partial")
        partial.write_text("".join(lines[i % len(lines)] + "\n" for i in range(count)), encoding="utf-8")
        partial.rename(path)
    return path


def models_dir(store):
    """K of the benchmarks' external models, in a folder of their own."""
    folder = WORK / f"models-{K}"
    if not folder.exists():
        dirs = common.make_models(store)["external"][:K]
        for d in dirs:
            shutil.copytree(d, folder / d.name)
    return folder


@contextlib.contextmanager
def pinned(cores):
    """This process on ``cores`` only, and so every process it starts meanwhile; then as before."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, cores)
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def timed(command, cores=None):
    """Wall time and output of ``command``, run on ``cores`` (a set of CPU numbers) or anywhere."""
    started = time.perf_counter()
    done = subprocess.run(command, cwd=common.ROOT, env={**common.ENV, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"},
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          preexec_fn=None if cores is None else lambda: os.sched_setaffinity(0, cores))
    if done.returncode:
        raise SystemExit(f"{' '.join(map(str, command))} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started, done.stdout


def score_on_cluster(nodes, store, models, texts, output):
    """Wall time of ``score`` on a fresh local cluster of ``nodes`` nodes with 1 CPU each, node i on core i."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # the nodes listen on 127.0.0.1 (see README)
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False,
            "object_store_memory": 1_000_000_000}
    with pinned({CORES[0]}):
        cluster = Cluster(initialize_head=True, head_node_args=node)
    try:
        for i in range(1, nodes):
            with pinned({CORES[i % len(CORES)]}):
                cluster.add_node(**node)
        output.unlink(missing_ok=True)
        seconds, stdout = timed([sys.executable, "-m", "external_embeddings", "score", "--store", store.path,
                                 "--models", models, "--input", texts, "--output", output,
                                 "--address", cluster.address, "--quiet"], cores={CORES[0]})
        print(f"  {nodes} node(s): {stdout.strip()}", flush=True)
        return seconds
    finally:
        cluster.shutdown()


def main(argv=None):
    args = common.parse_args(__doc__.splitlines()[0], argv)
    logging.getLogger("ray").setLevel(logging.ERROR)
    count = 10_000 if args.quick else 100_000
    WORK.mkdir(parents=True, exist_ok=True)
    store = common.glove_store()
    models, texts = models_dir(store), texts_file(count)
    print(f"Scoring {count:,} texts with K = {K} models ({texts}).", flush=True)
    predict = [sys.executable, "-m", "external_embeddings", "predict", "--store", store.path, "--models", models,
               "--json", "--file", texts]
    seconds = {}
    for side, cores in (("predict, 1 core", {CORES[0]}), ("predict, every core", None)):
        seconds[side], _ = timed(predict, cores)
        print(f"  {side}: {seconds[side]:,.1f} s", flush=True)
    for nodes in (1, 2):
        seconds[f"{nodes} node"] = score_on_cluster(nodes, store, models, texts, WORK / "scores.parquet")
    rows = scoring_rows(count, seconds)
    common.print_rows(f"Ray Data scoring, {count:,} texts, K = {K} (wall time, start-up included)", rows)
    common.save_json(args, {"texts": count, "models": K, "seconds": seconds, "rows": rows})


def scoring_rows(count, seconds):
    """The goals' rows, like for like in cores, and 2 nodes against predict on every core."""
    rate = {side: count / s for side, s in seconds.items()}
    one, two, alone, every = rate["1 node"], rate["2 node"], rate["predict, 1 core"], rate["predict, every core"]
    return [
        common.row("score: 2 nodes x 1 CPU vs 1 node x 1 CPU (texts/s)", f"{one:,.0f}", f"{two:,.0f}",
                   f"{two / one:.2f}x", ">= 1.7x", two / one >= 1.7, "each node pinned to a core of its own"),
        common.row("score on 1 node x 1 CPU vs predict, both on one core (texts/s)", f"{alone:,.0f}", f"{one:,.0f}",
                   f"{one / alone:.2f}x", ">= 0.85x (overhead <= 15%)", one / alone >= 0.85,
                   "Ray's own processes and the score driver share that core"),
        common.row(f"score on 2 nodes x 1 CPU vs predict on every core ({len(CORES)}) (texts/s)", f"{every:,.0f}",
                   f"{two:,.0f}", f"{two / every:.2f}x", "(informative)", None),
    ]

if __name__ == "__main__":
    main()
