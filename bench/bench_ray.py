"""Offline scoring on Ray: ``score`` on 1 node x 1 CPU vs 2 nodes x 1 CPU, and both vs ``predict``.

The real train split, repeated to 100,000 texts (10,000 with --quick), written once as a text
file (one text per line, newlines as ``\\n``), is scored with K = 4 external models (untrained:
weights do not change speed) on the packaged GloVe 6B 50d store:

* ``predict --json --file`` in one process (TensorFlow on every core of this machine);
* ``score --address`` on a local Ray cluster (``ray.cluster_utils.Cluster`` on 127.0.0.1) of
  1 node with 1 CPU, then of 2 nodes with 1 CPU each: one actor per CPU, one TF thread each.

Each figure is the command's wall time, start-up included (TensorFlow, and for score the
actors' start), as a user waits for it. Goals (issue 10): 2 nodes >= 1.7x the throughput of
1 node; Ray's overhead on 1 node <= 15% against predict. Both nodes share this machine's cores
(2, shared with other work), so 2 nodes here cannot show more than this machine has.

Run: python bench/bench_ray.py [--quick] [--json FILE]
"""

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


def timed(command):
    started = time.perf_counter()
    done = subprocess.run(command, cwd=common.ROOT, env={**common.ENV, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"},
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(map(str, command))} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - started, done.stdout


def score_on_cluster(nodes, store, models, texts, output):
    """Wall time of ``score`` on a fresh local cluster of ``nodes`` nodes with 1 CPU each."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # the nodes listen on 127.0.0.1 (see README)
    from ray.cluster_utils import Cluster

    node = {"num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False,
            "object_store_memory": 1_000_000_000}
    cluster = Cluster(initialize_head=True, head_node_args=node)
    try:
        for _ in range(nodes - 1):
            cluster.add_node(**node)
        output.unlink(missing_ok=True)
        seconds, stdout = timed([sys.executable, "-m", "external_embeddings", "score", "--store", store.path,
                                 "--models", models, "--input", texts, "--output", output,
                                 "--address", cluster.address, "--quiet"])
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
    seconds = {}
    seconds["predict"], _ = timed([sys.executable, "-m", "external_embeddings", "predict", "--store", store.path,
                                   "--models", models, "--json", "--file", texts])
    print(f"  predict: {seconds['predict']:,.1f} s", flush=True)
    for nodes in (1, 2):
        seconds[f"{nodes} node"] = score_on_cluster(nodes, store, models, texts, WORK / "scores.parquet")
    rate = {side: count / s for side, s in seconds.items()}
    rows = [
        common.row("score: 2 nodes x 1 CPU vs 1 node x 1 CPU (texts/s)", f"{rate['1 node']:,.0f}",
                   f"{rate['2 node']:,.0f}", f"{rate['2 node'] / rate['1 node']:.2f}x", ">= 1.7x",
                   rate["2 node"] / rate["1 node"] >= 1.7, "both nodes on this machine's 2 shared cores"),
        common.row("score on 1 node x 1 CPU vs predict, one process (texts/s)", f"{rate['predict']:,.0f}",
                   f"{rate['1 node']:,.0f}", f"{rate['1 node'] / rate['predict']:.2f}x", ">= 0.85x (overhead <= 15%)",
                   rate["1 node"] / rate["predict"] >= 0.85, "predict's TensorFlow uses both cores"),
        common.row("score on 2 nodes x 1 CPU vs predict, one process (texts/s)", f"{rate['predict']:,.0f}",
                   f"{rate['2 node']:,.0f}", f"{rate['2 node'] / rate['predict']:.2f}x", "(informative)", None),
    ]
    common.print_rows(f"Ray Data scoring, {count:,} texts, K = {K} (wall time, start-up included)", rows)
    common.save_json(args, {"texts": count, "models": K, "seconds": seconds, "rows": rows})


if __name__ == "__main__":
    main()
