"""Issue 9: validation accuracy of the external script with float32, float16 and int8 stores.

The packaged GloVe 6B 50d store is converted to each dtype, and the external script trains on
the real train split with each store and several seeds (its defaults otherwise: 10 epochs).
One seed cannot tell 0.5 points apart: validation accuracy swings by several points from one
epoch to the next, and any change of the inputs sends training down another path. So two
figures per dtype:

* **trained**: the mean over seeds of the run's validation accuracy, and the paired difference
  to float32 (same seed, same split, same initial weights), with its spread;
* **same model**: each float32 run's model evaluated on the same validation documents with its
  inputs gathered from the float16 or int8 store instead. This isolates the precision of the
  vectors from training noise.

Goal (issue 9): float16 and int8 within 0.5 points of float32. Runs already made (their
metrics.json exists) are reused, so an interrupted run resumes.

Run: python bench/bench_dtypes.py [--quick] [--seeds 1337,2,3] [--json FILE]
"""

import argparse
import functools
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

DTYPES = ("float32", "float16", "int8")
SCRIPT = "pretrained_external_word_embeddings"
WORK = common.RESULTS / "dtypes"


def dtype_store(dtype):
    """The packaged store rewritten in ``dtype``, once; returns its path."""
    from external_embeddings.store import convert_store

    path = WORK / "stores" / dtype
    if not (path / "store.json").exists():
        convert_store(common.glove_store().path, path, dtype)
    return path


def run_args(store, seed, epochs, corpus):
    return [f"--TEXT_DATA_DIR={corpus}", "--CORPUS_URL=", f"--CACHE_DIR={common.CACHE}", f"--VECTORS={store}",
            f"--SEED={seed}", f"--EPOCHS={epochs}"]


def train(dtype, seed, epochs, corpus):
    """One run of the external script; returns (its output folder, its metrics)."""
    out = WORK / "runs" / f"{dtype}-{seed}-{epochs}"
    metrics = out / SCRIPT / "metrics.json"
    if not metrics.exists():
        print(f"  training with the {dtype} store, SEED {seed}", flush=True)
        common.run([sys.executable, f"{SCRIPT}.py", *run_args(dtype_store(dtype), seed, epochs, corpus),
                    f"--OUTPUT_DIR={out}"])
    return out / SCRIPT, json.loads(metrics.read_text())


@functools.lru_cache(maxsize=1)
def padded_corpus(store, corpus, seed):
    """The whole corpus as the script pads it (ids of ``store``'s rows), and its labels; once for all seeds.

    A real corpus's tokens and ids do not depend on the seed, only the validation split does; the
    demo corpus (no ``corpus``: no 20 Newsgroups here) is generated from the seed, so callers pass
    the run's seed for it and 0 otherwise.
    """
    import config
    from external_embeddings import settings, sources
    from external_embeddings.text import tokenizer
    from external_embeddings.store import EmbeddingStore

    cfg = settings.load(config, run_args(store, seed, 1, corpus))
    opened = EmbeddingStore.open(store, verify=True)
    corpus_ = sources.find_corpus(cfg, opened)
    tokens = [tokenizer.tokenize(text) for text in corpus_.texts]
    word_index = opened.word_index([word for doc in tokens for word in doc])  # same ids in every dtype
    return tokenizer.pad([tokenizer.to_ids(t, word_index) for t in tokens], cfg.MAX_SEQUENCE_LENGTH), corpus_.labels


def same_model_accuracy(model_dir, stores, seed, epochs, corpus):
    """``{dtype: accuracy}`` of one trained model on its validation split, inputs from each store.

    The validation documents are found as the script finds them (same settings, same split);
    with the store it was trained on, this must give the run's own figure.
    """
    import keras

    import config
    from external_embeddings import settings
    from external_embeddings.batches import Batches
    from external_embeddings.text.corpus import split
    from external_embeddings.store import EmbeddingStore

    cfg = settings.load(config, run_args(stores["float32"], seed, epochs, corpus))
    opened = {d: EmbeddingStore.open(path, verify=True) for d, path in stores.items()}
    x, labels = padded_corpus(stores["float32"], corpus, 0 if corpus else seed)
    _, val = split(len(x), cfg.VALIDATION_SPLIT, cfg.SEED)
    model = keras.saving.load_model(model_dir / "model.keras")
    return {d: float(model.evaluate(Batches(x[val], labels[val], cfg.BATCH_SIZE, s), verbose=0)[1])
            for d, s in opened.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one seed, one epoch, 50 documents per category")
    parser.add_argument("--seeds", default="1337,2,3", help="comma-separated seeds (default: 1337,2,3)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    if args.quick:
        from bench_train import subset_corpus

        seeds, epochs, corpus = [1337], 1, subset_corpus(50) or ""
    else:
        seeds, epochs, corpus = [int(s) for s in args.seeds.split(",")], 10, common.TRAIN_TAR
    stores = {d: dtype_store(d) for d in DTYPES}
    runs = {d: {s: train(d, s, epochs, corpus) for s in seeds} for d in DTYPES}
    trained = {d: {s: m["val_accuracy"] for s, (_, m) in runs[d].items()} for d in DTYPES}
    same = {s: same_model_accuracy(runs["float32"][s][0], stores, s, epochs, corpus) for s in seeds}
    for s in seeds:  # the re-built validation split must be the script's own
        if abs(same[s]["float32"] - trained["float32"][s]) > 1e-6:
            raise SystemExit(f"SEED {s}: re-evaluated float32 accuracy {same[s]['float32']:.4f} differs from the "
                             f"run's {trained['float32'][s]:.4f}: the validation split was not rebuilt as the script does")

    points = lambda values: [100 * v for v in values]  # noqa: E731
    rows = []
    for d in DTYPES:
        diffs = points(trained[d][s] - trained["float32"][s] for s in seeds)
        shifts = points(same[s][d] - same[s]["float32"] for s in seeds)
        mean, spread = statistics.mean(diffs), (statistics.stdev(diffs) if len(diffs) > 1 else 0.0)
        shift = statistics.mean(shifts)
        size = common.dir_bytes(stores[d]) / common.MB
        rows.append(common.row(
            f"{d}: store {size:,.1f} MB; validation accuracy, mean of {len(seeds)} seed(s) "
            f"({', '.join(f'{trained[d][s]:.4f}' for s in seeds)})",
            f"{statistics.mean(trained['float32'].values()):.4f}", f"{statistics.mean(trained[d].values()):.4f}",
            f"{mean:+.2f} pts (sd {spread:.2f})", "within 0.5 points (paired by seed)",
            None if d == "float32" else abs(mean) <= 0.5, f"per seed: {', '.join(f'{v:+.2f}' for v in diffs)}"))
        rows.append(common.row(f"{d}: the float32-trained models on {d} inputs (points vs float32 inputs)",
                               "0.00", f"{shift:+.2f}", f"{shift:+.2f} pts", "within 0.5 points",
                               None if d == "float32" else abs(shift) <= 0.5,
                               f"per seed: {', '.join(f'{v:+.2f}' for v in shifts)}"))
    common.print_rows(f"Store dtypes, external script, {epochs} epoch(s), seeds {seeds}", rows)
    common.save_json(args, {"seeds": seeds, "epochs": epochs, "trained": trained, "same_model": same, "rows": rows})


if __name__ == "__main__":
    main()
