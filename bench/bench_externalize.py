"""Issue 17: eight keras-io models brought over with ``externalize``: disk, memory, speed, time.

Each original is the keras-io "pretrained word embeddings" example as its authors build it: a
TextVectorization adapted on its own training texts (20,000 words, 200 ids), a frozen
Embedding(len(vocabulary) + 2, 50) filled from GloVe 6B 50d (the packaged store's vectors, the
same float32 numbers a parse of the GloVe text gives) with zero rows for words GloVe lacks, and
the example's CNN, trained briefly on a subset of the real 20 Newsgroups train split (each model
on its own 10 of the 20 labels, its own seed). The end-to-end string model is saved as .keras.

Each is externalized with the command line. Then, in one run:

- disk: the 8 .keras files vs the 8 externalized folders (the store is shared, and counted
  once beside them too);
- memory: summed PSS growth of ``--workers`` processes serving all 8 originals (a loop that
  loads them with keras and predicts) vs as many serving the 8 externalized ones through the
  Predictor from one store. Each side runs alone, and its figure is the median of its readings
  after loading and after each of 4 more passes (every worker settled first): between runs of
  the same code, one reading swung by up to 50 MB, as TensorFlow's freed temporaries fell;
- throughput: one worker a side on the same held-out texts, passes alternating; the ratio is
  the median of the 15 passes' ratios. Their probabilities are compared (goal: within 1e-5).

With ``--shared-vocabulary`` every TextVectorization is adapted on the same 2,000 posts (each
model still trains on its own labels), so the Predictor tokenizes and maps each text once for all.

Run: nice -n 10 python bench/bench_externalize.py [--quick] [--shared-vocabulary] [--json FILE]
"""

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

WORK = common.RESULTS / "externalize"
LENGTH, MAX_TOKENS, LABELS_PER_MODEL = 200, 20000, 10


def sizes(quick):
    return {"models": 2, "docs": 300, "texts": 64, "repeats": 2, "workers": 1, "passes": 1} if quick else \
        {"models": 8, "docs": 2000, "texts": 512, "repeats": 15, "workers": 2, "passes": 4}


def split(corpus, count, texts):
    """(training documents, held-out texts): the last ``texts`` documents are never trained on."""
    order = np.random.default_rng(0).permutation(len(corpus.texts))
    return order[:-texts][:count], [corpus.texts[i] for i in order[-texts:]]


def make_original(i, corpus, train_ids, store, path, shared_vocabulary=False):
    """Model i: keras-io's example on its own label subset and seed, trained one epoch; saved as .keras.

    Its TextVectorization is adapted on its own training texts, or with ``shared_vocabulary`` on
    all of them, as teams that share one corpus and train on different labels would."""
    import keras

    keras.utils.set_random_seed(1000 + i)
    rng = np.random.default_rng(i)
    labels = sorted(rng.choice(len(corpus.label_names), LABELS_PER_MODEL, replace=False).tolist())
    chosen = [j for j in train_ids if corpus.labels[j] in labels]
    texts = [corpus.texts[j] for j in chosen]
    y = np.array([labels.index(int(corpus.labels[j])) for j in chosen])
    vectorizer = keras.layers.TextVectorization(max_tokens=MAX_TOKENS, output_sequence_length=LENGTH)
    vectorizer.adapt([corpus.texts[j] for j in train_ids] if shared_vocabulary else texts)
    voc = vectorizer.get_vocabulary()
    num_tokens = len(voc) + 2
    found = store.lookup(voc)  # keras-io: embeddings_index.get(word), zeros when missing
    matrix = np.zeros((num_tokens, store.dim), dtype=np.float32)
    matrix[:len(voc)] = store.gather([found.get(word, 0) for word in voc])
    embedding_layer = keras.layers.Embedding(num_tokens, store.dim, trainable=False)
    embedding_layer.build((1,))
    embedding_layer.set_weights([matrix])
    int_sequences_input = keras.Input(shape=(None,), dtype="int32")
    x = embedding_layer(int_sequences_input)
    x = keras.layers.Conv1D(128, 5, activation="relu")(x)
    x = keras.layers.MaxPooling1D(5)(x)
    x = keras.layers.Conv1D(128, 5, activation="relu")(x)
    x = keras.layers.MaxPooling1D(5)(x)
    x = keras.layers.Conv1D(128, 5, activation="relu")(x)
    x = keras.layers.GlobalMaxPooling1D()(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    x = keras.layers.Dropout(0.5)(x)
    preds = keras.layers.Dense(len(labels), activation="softmax")(x)
    model = keras.Model(int_sequences_input, preds)
    model.compile(loss="sparse_categorical_crossentropy", optimizer="rmsprop", metrics=["acc"])
    model.fit(vectorizer(np.array([[t] for t in texts])).numpy(), y, batch_size=128, epochs=1, verbose=0)
    string_input = keras.Input(shape=(1,), dtype="string")
    end_to_end_model = keras.Model(string_input, model(vectorizer(string_input)))
    end_to_end_model.save(path)
    return [corpus.label_names[j] for j in labels], int(matrix.nbytes)


def originals(store, corpus, count, docs, texts, shared_vocabulary=False):
    """The original .keras files (made once per size), their label names and embedding bytes."""
    folder = WORK / f"originals-{count}-{docs}{'-shared' if shared_vocabulary else ''}"
    info_file = folder / "info.json"
    if not info_file.exists():
        common.fresh_dir(folder)
        train_ids, _ = split(corpus, docs, texts)
        info = {}
        for i in range(count):
            started = time.perf_counter()
            labels, embedding = make_original(i, corpus, train_ids, store, folder / f"model{i}.keras",
                                              shared_vocabulary)
            info[f"model{i}"] = {"labels": labels, "embedding_bytes": embedding}
            print(f"  original model{i}: {time.perf_counter() - started:,.0f} s", flush=True)
        info_file.write_text(json.dumps(info, indent=1))
    return folder, json.loads(info_file.read_text())


def externalize_all(store, folder, info):
    """Every original through the command line into models/NAME; returns (folder, wall seconds each)."""
    out = common.fresh_dir(folder / "externalized")
    seconds = []
    for name, entry in info.items():
        labels = folder / f"{name}.labels"
        labels.write_text("\n".join(entry["labels"]) + "\n")
        started = time.perf_counter()
        done = common.run([sys.executable, "-m", "external_embeddings", "externalize", str(folder / f"{name}.keras"),
                           "--store", str(store.path), "--output", str(out / name), "--labels", str(labels)])
        seconds.append(time.perf_counter() - started)
        print("  " + done.stdout.strip().replace("\n", "\n  "), flush=True)
    return out, seconds


def worker(side, folder, store_path, texts_file):
    """A serving process: TF warmed, "ready"; on a line, load all models and predict once, "loaded";
    then on each "time" line, predict every text with every model and print the seconds."""
    import keras
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")
    texts = json.loads(Path(texts_file).read_text())
    from bench_memory import settle

    warm = keras.Sequential([keras.Input((LENGTH, 50)), keras.layers.Conv1D(8, 5), keras.layers.GlobalMaxPooling1D(),
                             keras.layers.Dense(2, activation="softmax")])
    warm.predict_on_batch(np.zeros((4, LENGTH, 50), np.float32))
    from external_embeddings.store import EmbeddingStore
    from external_embeddings.predictor import Predictor

    settle()
    print("ready", flush=True)
    sys.stdin.readline()
    if side == "original":
        names = sorted(p.stem for p in Path(folder).glob("*.keras"))
        models = [keras.saving.load_model(Path(folder) / f"{n}.keras") for n in names]

        def run():
            out = []
            for start in range(0, len(texts), 256):
                batch = tf.constant(texts[start:start + 256])[:, None]
                out.append([np.asarray(m.predict_on_batch(batch)) for m in models])
            return [np.concatenate([b[k] for b in out]) for k in range(len(models))]
    else:
        predictor = Predictor(EmbeddingStore.open(store_path), folder)
        names = sorted(predictor.models)

        def run():
            results = predictor.predict(texts)
            return [np.array([[r[n]["probabilities"][label] for label in predictor.models[n][1]["labels"]]
                              for r in results]) for n in names]
    probabilities = run()
    np.savez(Path(texts_file).with_name(f"{side}.npz"), **dict(zip(names, probabilities)))
    settle()
    print("loaded", flush=True)
    for line in sys.stdin:
        if line.strip() != "time":
            break
        started = time.perf_counter()
        run()
        seconds = time.perf_counter() - started
        settle()  # after the clock stops: what a reading of PSS then sees is what the worker holds
        print(f"{seconds:.6f}", flush=True)


def start(side, folder, store_path, texts_file, count):
    """``count`` workers of one side, started as the serving benchmarks start servers (SERVE_ENV:
    fewer malloc arenas, so that memory measures the models, not where TensorFlow's freed
    temporaries happened to land)."""
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", side, str(folder), str(store_path),
                               str(texts_file)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=common.SERVE_ENV) for _ in range(count)]
    for p in procs:
        if (line := p.stdout.readline().strip()) != "ready":
            raise RuntimeError(f"{side} worker said {line!r} (exit code {p.poll()})")
    return procs


def ask(procs, word, answer=None):
    for p in procs:
        p.stdin.write(word + "\n")
        p.stdin.flush()
    lines = [p.stdout.readline().strip() for p in procs]
    if answer is not None and any(line != answer for line in lines):
        raise RuntimeError(f"workers said {lines}, expected {answer!r}")
    return lines


def stop(procs):
    for p in procs:
        if p.poll() is None:
            p.stdin.close()
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()


def memory(side, folder, store_path, texts_file, workers, passes):
    """Summed PSS growth of one side's ``workers``, from ready to loaded and after each of ``passes``
    further passes (each worker settles after each): their median is what the side holds between
    batches. Each side runs alone: PSS splits a library page among every process that maps it, so
    the other side's workers would take a share of the pages this side's loading touched."""
    procs = start(side, folder, store_path, texts_file, workers)
    watched = [psutil.Process(p.pid) for p in procs]
    try:
        before = common.pss(watched)
        ask(procs, "go", "loaded")
        readings = [common.pss(watched) - before]
        for _ in range(passes):
            ask(procs, "time")
            readings.append(common.pss(watched) - before)
        return readings
    finally:
        stop(procs)


def timing(folders, store_path, texts_file, repeats):
    """Seconds per pass of one worker a side, alternating sides (and their order) pass by pass."""
    procs = {side: start(side, folder, store_path, texts_file, 1) for side, folder in folders.items()}
    try:
        for ps in procs.values():
            ask(ps, "go", "loaded")
        times = {side: [] for side in procs}
        for r in range(repeats):
            for side in (list(procs) if r % 2 == 0 else list(procs)[::-1]):
                times[side].append(float(ask(procs[side], "time")[0]))
        return times
    finally:
        for ps in procs.values():
            stop(ps)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    shared = "--shared-vocabulary" in argv  # all 8 adapted on the same texts: one tokenizer serves them
    args = common.parse_args(__doc__.splitlines()[0], [a for a in argv if a != "--shared-vocabulary"])
    size = sizes(args.quick)
    corpus = common.load_texts()
    if corpus is None:
        raise SystemExit(f"needs the 20 Newsgroups train split at {common.TRAIN_TAR}")
    store = common.glove_store()
    folder, info = originals(store, corpus, size["models"], size["docs"], size["texts"], shared)
    externalized, seconds = externalize_all(store, folder, info)
    _, held_out = split(corpus, size["docs"], size["texts"])
    texts_file = folder / "texts.json"
    texts_file.write_text(json.dumps(held_out))
    store_path = store.path
    del store  # unmapped here, so that only the workers' PSS counts it
    folders = {"original": folder, "external": externalized}
    readings = {side: memory(side, f, store_path, texts_file, size["workers"], size["passes"])
                for side, f in folders.items()}
    growth = {side: common.median(r) for side, r in readings.items()}
    times = timing(folders, store_path, texts_file, size["repeats"])
    original, external = np.load(folder / "original.npz"), np.load(folder / "external.npz")
    max_diff = max(float(np.abs(original[n] - external[n]).max()) for n in info)
    embedding = sum(entry["embedding_bytes"] for entry in info.values())
    figures = {"models": len(info), "docs": size["docs"], "shared_vocabulary": shared, "texts": len(held_out),
               "workers": size["workers"], "repeats": size["repeats"], "passes": size["passes"],
               "embedding_bytes": embedding,
               "original_bytes": sum((folder / f"{n}.keras").stat().st_size for n in info),
               "external_bytes": common.dir_bytes(externalized), "store_bytes": common.dir_bytes(store_path),
               "pss_growth": growth, "pss_readings": readings, "seconds": times, "externalize_seconds": seconds, "max_diff": max_diff}
    figures["rows"] = rows(figures)
    common.print_rows(f"{len(info)} keras-io models{' sharing one vocabulary' if shared else ''}, original vs "
                      f"externalized ({size['workers']} worker(s) a side, "
                      f"{len(held_out)} texts, {size['repeats']} timed passes)", figures["rows"])
    return common.save_json(args, figures)


def rows(f):
    mb = lambda b: f"{b / common.MB:,.2f} MB"  # noqa: E731
    k, embedding = f["models"], f["embedding_bytes"]
    saved_disk = f["original_bytes"] - f["external_bytes"]
    saved_ram = f["pss_growth"]["original"] - f["pss_growth"]["external"]
    speed = {side: f["texts"] / common.median(t) for side, t in f["seconds"].items()}
    # Pass r of each side ran back to back, so their ratio cancels the machine's slower spells.
    paired = common.median([o / e for o, e in zip(f["seconds"]["original"], f["seconds"]["external"])])
    return [
        common.row(f"disk, {k} models (the store is shared: counted below)", mb(f["original_bytes"]),
                   mb(f["external_bytes"]), f"{f['external_bytes'] / f['original_bytes']:.2f}x",
                   f">= 90% of the {mb(embedding)} of embeddings saved", saved_disk >= 0.9 * embedding,
                   f"saved {mb(saved_disk)} = {saved_disk / embedding:.0%} of the embeddings"),
        common.row(f"disk, {k} models with the store once", mb(f["original_bytes"]),
                   mb(f["external_bytes"] + f["store_bytes"]),
                   f"{(f['external_bytes'] + f['store_bytes']) / f['original_bytes']:.2f}x", "(informative)", None,
                   f"the GloVe store ({mb(f['store_bytes'])}) is already there for the scripts' models; alone it "
                   f"pays for itself from {f['store_bytes'] / max(saved_disk / k, 1):,.0f} models"),
        common.row(f"memory, summed PSS growth of {f['workers']} serving process(es), {k} models each (median of "
                   f"{f.get('passes', 0) + 1} readings)",
                   mb(f["pss_growth"]["original"]), mb(f["pss_growth"]["external"]),
                   f"{f['pss_growth']['external'] / f['pss_growth']['original']:.2f}x",
                   f">= 90% of the {mb(embedding * f['workers'])} of embeddings saved",
                   saved_ram >= 0.9 * embedding * f["workers"],
                   f"saved {mb(saved_ram)} = {saved_ram / (embedding * f['workers']):.0%} of the embeddings the "
                   "originals hold"),
        common.row(f"throughput, {f['texts']} texts x {k} models, texts/s", f"{speed['original']:,.0f}",
                   f"{speed['external']:,.0f}", f"{paired:.2f}x", "at least as fast", paired >= 1,
                   "ratio: the median of the passes' ratios, each side's pass r run back to back"),
        common.row("probabilities, max |original - externalized|", "-", f"{f['max_diff']:.2g}", "-", "<= 1e-5",
                   f["max_diff"] <= 1e-5),
        common.row("externalize one model (command line, wall time incl. TensorFlow start)", "-",
                   f"{common.median(f['externalize_seconds']):,.1f} s", "-", "(informative)", None,
                   f"median of {len(f['externalize_seconds'])}"),
    ]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        worker(*sys.argv[2:6])
    else:
        main()
