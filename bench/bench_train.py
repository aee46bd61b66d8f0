"""Goal 5: training, the external script vs the baseline, and the array the old script built.

Each script runs as a subprocess with the same settings and its own OUTPUT_DIR; samples/s and
peak RSS come from the metrics.json it writes. Goals: external throughput >= 0.9x the
baseline's, and peak RSS <= 1.2x. Each repeat runs both scripts, in alternating order.

Beside them: the peak RSS of building the whole (N, length, dim) float32 input at once, as the
old external script did, measured in a subprocess on a subset of documents, and its size
extrapolated to all documents.

Run: python bench/bench_train.py [--quick]
"""

import json
import shutil
import sys
import tarfile
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from external_embeddings.models.results import peak_rss_bytes  # noqa: E402

SCRIPTS = {"baseline": "pretrained_word_embeddings", "external": "pretrained_external_word_embeddings"}


def subset_corpus(per_category):
    """A folder with the first ``per_category`` documents of each category of the real train split.

    Read straight from the .tar.gz, so this process stays small: a child's getrusage peak
    starts from its parent's RSS on Linux, and the scripts report theirs that way.
    """
    if not common.TRAIN_TAR.is_file():
        return None
    target = common.CACHE / "corpora" / f"train-subset-{per_category}"
    if not target.exists():
        partial = common.fresh_dir(target.with_name(target.name + ".partial"))
        taken = {}
        with tarfile.open(common.TRAIN_TAR) as tar:
            for member in tar:  # ROOT/<category>/<number>
                parts = Path(member.name).parts
                if member.isfile() and len(parts) == 3 and taken.get(parts[1], 0) < per_category:
                    taken[parts[1]] = taken.get(parts[1], 0) + 1
                    (partial / parts[1]).mkdir(exist_ok=True)
                    (partial / parts[1] / parts[2]).write_bytes(tar.extractfile(member).read())
        partial.rename(target)
    return target


def train(side, corpus, epochs):
    """Run one script; returns its metrics.json."""
    out = common.RESULTS / "train" / side
    shutil.rmtree(out, ignore_errors=True)
    common.run([sys.executable, f"{SCRIPTS[side]}.py", f"--TEXT_DATA_DIR={corpus or ''}", "--CORPUS_URL=",
                f"--CACHE_DIR={common.CACHE}", f"--OUTPUT_DIR={out}", f"--EPOCHS={epochs}"])
    return json.loads((out / SCRIPTS[side] / "metrics.json").read_text())


def materialize(count):
    """Subprocess body: build the (count, length, dim) array at once; print RSS figures as JSON."""
    from external_embeddings.text import tokenizer
    from external_embeddings.store import EmbeddingStore

    store = EmbeddingStore.open(common.glove_store().path, max_bytes=2**40)  # no budget: that is the point
    corpus = common.load_texts()
    all_docs = len(corpus.texts) if corpus else count
    corpus = common.load_texts(count)
    texts = corpus.texts if corpus else common.generated_texts(store, count)
    tokens = [tokenizer.tokenize(t) for t in texts]
    found = store.lookup(t for doc in tokens for t in doc)
    ids = tokenizer.pad([tokenizer.to_ids(doc, found) for doc in tokens], common.LENGTH)
    float(store.vectors.sum())  # map the store's pages in first: they are a fixed cost, not the array's
    before = psutil.Process().memory_info().rss  # now, not the peak so far: the growth is the array's
    array = store.gather(ids)
    peak = peak_rss_bytes()
    print(json.dumps({"docs": len(texts), "all_docs": all_docs, "array_bytes": array.nbytes, "rss_before": before,
                      "peak_rss": peak}))


def main(argv=None):
    args = common.parse_args(__doc__.splitlines()[0], argv)
    epochs, repeats, per_category, subset = (1, 1, 50, 500) if args.quick else (2, 3, None, 2000)
    corpus = subset_corpus(per_category) if per_category else (common.TRAIN_TAR if common.TRAIN_TAR.is_file() else None)

    runs = {"baseline": [], "external": []}
    for r in range(repeats):
        for side in (("baseline", "external") if r % 2 == 0 else ("external", "baseline")):
            runs[side].append(train(side, corpus, epochs))
    speed = {s: common.median([m["train_samples_per_second"] for m in ms]) for s, ms in runs.items()}
    peak = {s: common.median([m["peak_rss_bytes"] for m in ms]) for s, ms in runs.items()}

    done = common.run([sys.executable, __file__, "--materialize", str(subset)])
    mat = json.loads(done.stdout.strip().splitlines()[-1])
    all_docs = mat["all_docs"]
    scale = all_docs / mat["docs"]
    mat.update(all_array_bytes=int(mat["array_bytes"] * scale),
               all_peak_rss=int(mat["rss_before"] + (mat["peak_rss"] - mat["rss_before"]) * scale))

    train_docs = runs["baseline"][0]["train_samples"]
    figures = {"epochs": epochs, "repeats": repeats, "corpus": str(corpus or "demo corpus"), "train_docs": train_docs,
               "samples_per_second": speed, "peak_rss_bytes": peak, "materialize": mat,
               "val_accuracy": {s: runs[s][-1]["val_accuracy"] for s in runs}}
    mb = lambda b: f"{b / common.MB:,.0f} MB"  # noqa: E731
    speed_ratio, rss_ratio = speed["external"] / speed["baseline"], peak["external"] / peak["baseline"]
    what = f"{train_docs:,} docs x {epochs} epoch(s)"
    figures["rows"] = [
        common.row(f"training samples/s ({what})", f"{speed['baseline']:,.1f}", f"{speed['external']:,.1f}",
                   f"{speed_ratio:,.2f}x", ">= 0.9x", speed_ratio >= 0.9),
        common.row(f"training peak RSS ({what})", mb(peak["baseline"]), mb(peak["external"]),
                   f"{rss_ratio:,.2f}x", "<= 1.2x", rss_ratio <= 1.2),
        common.row(f"old way: whole (N, {common.LENGTH}, dim) float32 array, peak RSS of {mat['docs']:,} docs",
                   "-", f"{mb(mat['peak_rss'])} (array {mb(mat['array_bytes'])})", "-", "(informative)", None,
                   f"for all {all_docs:,} docs: array {mb(mat['all_array_bytes'])}, "
                   f"peak ~{mb(mat['all_peak_rss'])} before any TensorFlow"),
    ]
    common.print_rows(f"Training ({figures['corpus']}, medians of {repeats})", figures["rows"])
    return common.save_json(args, figures)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--materialize"]:
        materialize(int(sys.argv[2]))
    else:
        main()
