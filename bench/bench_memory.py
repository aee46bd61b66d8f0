"""Goals 2 and 3: RAM and disk for K models, each with its own embedding vs one shared store.

RAM is measured in worker processes that import TensorFlow, report "ready", then (on a line
from this process) load their models the way production does (``load_model`` of the saved
``.keras``), run one prediction and, for the external side, open the store and touch all of its
pages. The growth between "ready" and "done" is what the models and the store cost:

* one process with K models: growth of its RSS and USS;
* K processes with one model each: growth of the sum of their PSS, which counts a page
  shared by n processes as 1/n in each, so the store's mapped pages count once in total.

Disk: K baseline .keras files vs the store's files once plus K external .keras files.
Goal for both: the external total grows per model by the CNN's size only.

Run: python bench/bench_memory.py [--quick]
"""

import ctypes
import gc
import subprocess
import sys
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

BATCH = 64  # documents in the one prediction each model runs


def settle():
    """Collect garbage and hand freed heap back to the OS (glibc), so a snapshot is live memory.

    Without this, which of TensorFlow's freed temporaries glibc keeps cached swings RSS by
    10-40 MB from one model to the next, hiding the 4 MB per model being measured.
    """
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: the figures are just noisier
        pass


def worker(kind, store_dir, model_dirs, touch_rows=None):
    """Body of a worker process (see the module docstring); speaks one line at a time on stdio.

    With ``touch_rows``, the external side touches the index and only the store's first
    ``touch_rows`` rows (the most frequent words, in a GloVe-ordered file) instead of every page.
    """
    import json

    import keras
    import tensorflow as tf

    from external_embeddings.models.model import conv_classifier, load_model

    tf.get_logger().setLevel("ERROR")  # each model traces its own predict function: expected
    from external_embeddings.store import EmbeddingStore

    # Warm TensorFlow up with a throwaway model of the same kind and shapes, so its one-time
    # costs (thread pools, kernels: ~75 MB) are in "ready" for both sides and do not make the
    # first real model look expensive. The growth after "ready" is then the models and store.
    dim = json.loads((Path(store_dir) / "store.json").read_text())["dim"]
    if kind == "external":
        inputs = embedded = keras.Input((common.LENGTH, dim), dtype="float32")
        batch = np.zeros((BATCH, common.LENGTH, dim), np.float32)
    else:
        inputs = keras.Input((common.LENGTH,), dtype="int32")
        embedded = keras.layers.Embedding(2, dim)(inputs)
        batch = np.ones((BATCH, common.LENGTH), np.int32)
    conv_classifier(inputs, embedded, 20).predict_on_batch(batch)
    del inputs, embedded, batch
    settle()
    print("ready", flush=True)
    sys.stdin.readline()
    rng = np.random.default_rng(0)
    models = [load_model(d) for d in model_dirs]
    if kind == "external":
        store = EmbeddingStore.open(store_dir)
        # Touch every page of the store, as a long-running server eventually does.
        rows = store.count if touch_rows is None else min(touch_rows, store.count)
        touched = [store.vectors[:rows], store._offsets, store._hashes, store._rows, np.frombuffer(store._vocab, np.uint8)]
        sum(float(a.sum()) for a in touched)
        inputs = store.gather(rng.integers(1, rows + 1, (BATCH, common.LENGTH)))
    else:
        inputs = rng.integers(1, min(common.NUM_WORDS, touch_rows or common.NUM_WORDS), (BATCH, common.LENGTH)).astype(np.int32)
    for model in models:
        model.predict_on_batch(inputs)
    del inputs
    settle()
    print("done", flush=True)
    sys.stdin.readline()


def start_workers(kind, store_dir, groups, touch_rows=None):
    """One worker process per group of model folders; returns them once all are ready."""
    touch = [f"--touch={touch_rows}"] if touch_rows else []
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", kind, str(store_dir), *touch, *map(str, group)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=common.ENV)
             for group in groups]
    expect(procs, "ready")
    return procs


def expect(procs, word):
    for p in procs:
        line = p.stdout.readline().strip()
        if line != word:
            p.kill()
            raise RuntimeError(f"worker said {line!r}, expected {word!r} (exit code {p.wait()})")


def tell(procs):
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()


def measure(kind, store_dir, dirs, k, processes, groups=None, touch_rows=None):
    """Bytes of growth for K models of ``kind``: (RSS, USS) in one process, or (sum of PSS,) in K.

    ``groups`` (lists of model folders, one worker each) replaces the K and one-process layouts.
    """
    if groups is None:
        groups = [[d] for d in dirs[:k]] if processes else [dirs[:k]]
    procs = start_workers(kind, store_dir, groups, touch_rows)
    try:
        def snapshot():
            infos = [psutil.Process(p.pid).memory_full_info() for p in procs]
            return np.array([[i.rss, i.uss, i.pss] for i in infos]).sum(axis=0)

        before = snapshot()
        tell(procs)
        expect(procs, "done")
        growth = snapshot() - before
        tell(procs)
        for p in procs:
            p.wait(timeout=60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return {"rss": int(growth[0]), "uss": int(growth[1]), "pss": int(growth[2])}


def line(ks, totals):
    """(slope, intercept) of a least-squares line through (K, total): the slope is what each
    extra model costs, the intercept what the side costs before any model (the store)."""
    slope, intercept = np.polyfit(ks, totals, 1)
    return float(slope), float(intercept)


def cnn_bytes(model_dir):
    """Bytes of the CNN's weights (the external model holds nothing else)."""
    from external_embeddings.models.model import load_model

    return sum(int(np.prod(w.shape)) * 4 for w in load_model(model_dir).weights)


def main(argv=None):
    args = common.parse_args(__doc__.splitlines()[0], argv)
    ks = [1, 2] if args.quick else [1, 2, 4, 8]
    repeats = 1 if args.quick else 3
    store = common.glove_store()
    dirs = common.make_models(store)
    cnn = cnn_bytes(dirs["external"][0])
    embedding = common.NUM_WORDS * store.dim * 4
    # Unmap the store here: pages this process maps would count as shared, hiding them from the
    # workers' USS and halving their PSS.
    store_path = store.path
    del store
    gc.collect()
    if any(m.path.startswith(str(store_path)) for m in psutil.Process().memory_maps()):
        raise RuntimeError(f"{store_path} is still mapped by the measuring process")

    # Disk: exact sizes, no repeats needed.
    keras_size = {kind: [(d / "model.keras").stat().st_size for d in ds] for kind, ds in dirs.items()}
    store_size = common.dir_bytes(store_path)
    disk = {"baseline": [sum(keras_size["baseline"][:k]) for k in ks],
            "external": [store_size + sum(keras_size["external"][:k]) for k in ks]}

    # RAM: for each mode, K and repeat, the two sides one after the other, in alternating order.
    ram = {}
    for mode, processes in (("one_process", False), ("k_processes", True)):
        samples = {kind: {k: [] for k in ks} for kind in dirs}
        for r in range(repeats):
            for k in ks:
                for kind in (("baseline", "external") if r % 2 == 0 else ("external", "baseline")):
                    samples[kind][k].append(measure(kind, store_path, dirs[kind], k, processes))
        key = "pss" if processes else "uss"
        ram[mode] = {kind: {"rss": [int(common.median([s["rss"] for s in samples[kind][k]])) for k in ks],
                            key: [int(common.median([s[key] for s in samples[kind][k]])) for k in ks]}
                     for kind in dirs}
    figures = {"ks": ks, "repeats": repeats, "cnn_bytes": cnn, "embedding_bytes": embedding,
               "store_bytes": store_size, "keras_bytes": {kind: sizes[0] for kind, sizes in keras_size.items()},
               "disk": disk, "ram": ram}
    figures["rows"] = rows(figures)
    common.print_rows(f"RAM and disk for K = {ks} models (medians of {repeats}; per model = slope over K)",
                      figures["rows"])
    return common.save_json(args, figures)


def rows(f):
    """Totals at the largest K and the per-model slope for disk and each RAM measure."""
    ks, mb, k = f["ks"], lambda b: f"{b / common.MB:,.1f} MB", f["ks"][-1]
    cnn, embedding = f["cnn_bytes"], f["embedding_bytes"]
    out = []
    measures = [("disk", f["disk"])]
    measures += [(f"RAM, one process, {m.upper()} growth", {kind: f["ram"]["one_process"][kind][m] for kind in
                                                             ("baseline", "external")}) for m in ("rss", "uss")]
    measures += [("RAM, K processes, sum of PSS growth", {kind: f["ram"]["k_processes"][kind]["pss"] for kind in
                                                          ("baseline", "external")})]
    for name, totals in measures:
        base, ext = totals["baseline"], totals["external"]
        (slope_b, start_b), (slope_e, start_e) = line(ks, base), line(ks, ext)
        # Where the two lines cross: from this many models on, the external side takes less.
        even = f"the lines cross at K ~ {(start_e - start_b) / (slope_b - slope_e):,.0f}" if slope_b > slope_e else ""
        out.append(common.row(f"{name}, total for K={k}", mb(base[-1]), mb(ext[-1]),
                              f"{ext[-1] / base[-1]:,.2f}x", "(informative)", None, even))
        # The goal: each extra external model costs its CNN, not an embedding. Both sides pay the
        # same per-model overhead beyond weights (Keras objects; in K processes, a TF runtime's
        # first model), so the external's slope must sit at least the embedding's size (less 10%
        # for noise) below the baseline's.
        saved = slope_b - slope_e
        out.append(common.row(f"{name}, per extra model", mb(slope_b), mb(slope_e), f"{slope_e / slope_b:,.2f}x",
                              f"saves the {mb(embedding)} embedding/model; CNN is {mb(cnn)}",
                              saved >= 0.9 * embedding,
                              f"saves {mb(saved)}/model; external per model beyond the CNN's weights: "
                              f"{mb(slope_e - cnn)}" + (" (Keras/TF state the baseline pays too)" if name != "disk"
                                                        else "")))
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        touch = [int(a.split("=")[1]) for a in sys.argv[4:5] if a.startswith("--touch=")]
        worker(sys.argv[2], sys.argv[3], sys.argv[4 + len(touch):], *touch)
    else:
        main()
