"""Issue 16: validation accuracy over seeds, at the final and at the best epoch, for both scripts.

One run's validation accuracy is no measure of a script: it swings by several points from one
epoch to the next, and another seed (or another machine) sends training down another path. So
each side runs with several seeds on the real train split, each run a fresh subprocess with its
own OUTPUT_DIR, and the figures are the mean, sd, min and max over the seeds of the final epoch's
and of the best epoch's validation accuracy, beside the CPU and thread count they ran on.

Sides: the baseline, the external script (every word the store holds) and, with ``like`` in
--sides, the external script like for like (``--STORE_VOCABULARY=false``). Runs already made
(their metrics.json, with the per-epoch history, exists) are reused, so an interrupted run resumes.

Run: python bench/bench_seeds.py [--quick] [--seeds 1337,2,3] [--sides baseline,external,like] [--made-only]
[--json FILE]
"""

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
from external_embeddings.models.results import cpu_model  # noqa: E402

SIDES = {"baseline": ("pretrained_word_embeddings", []),
         "external": ("pretrained_external_word_embeddings", []),
         "like": ("pretrained_external_word_embeddings", ["--STORE_VOCABULARY=false"])}
WORK = common.RESULTS / "seeds"
# --quick trains on a tiny generated corpus: 3 topics whose words point along their own axis.
QUICK_SETTINGS = ["--EPOCHS=1", "--BATCH_SIZE=8", "--MAX_SEQUENCE_LENGTH=150", "--MAX_NUM_WORDS=100",
                  "--VALIDATION_SPLIT=0.25"]


def quick_data(folder, topics=3, words=8, docs=30, dim=8):
    """A tiny GloVe text file and a 20 Newsgroups-layout corpus in ``folder``, made once; returns both paths.

    Made here rather than taken from the real split so that --quick needs no GloVe store and
    trains in seconds (the tests' fixtures live in tests/, which a benchmark does not import).
    """
    import numpy as np

    vectors, corpus = folder / "vectors.txt", folder / "corpus"
    if vectors.exists() and corpus.exists():
        return vectors, corpus
    rng = np.random.default_rng(0)
    lines, vocab = [], []
    for t in range(topics):
        vocab.append([f"topic{t}word{w}" for w in range(words)])
        for word in vocab[-1]:
            vector = rng.normal(0, 0.3, dim)
            vector[t % dim] += 1
            lines.append(word + " " + " ".join(f"{x:.5f}" for x in vector))
    common_words = [f"common{w}" for w in range(4 * words)]  # most of each document: no topic in them
    lines += [word + " " + " ".join(f"{x:.5f}" for x in rng.normal(0, 0.3, dim)) for word in common_words]
    folder.mkdir(parents=True, exist_ok=True)
    vectors.write_text("\n".join(lines) + "\n")
    partial = common.fresh_dir(folder / "corpus.partial")
    for t, topic_words in enumerate(vocab):
        (partial / f"topic{t}").mkdir()
        for d in range(docs):
            # Few topic words among many common ones, so one epoch does not learn it all (accuracy < 1).
            text = " ".join(rng.choice(topic_words + common_words, size=int(rng.integers(5, 30))))
            (partial / f"topic{t}" / str(t * docs + d)).write_text(f"Subject: post\n\n{text}\n")
    partial.rename(corpus)
    return vectors, corpus


def settings(quick):
    """The scripts' settings shared by every run (data, cache, epochs)."""
    if quick:
        vectors, corpus = quick_data(WORK / "quick-data")
        return [f"--VECTORS={vectors}", f"--TEXT_DATA_DIR={corpus}", "--CORPUS_URL=",
                f"--CACHE_DIR={common.CACHE}", *QUICK_SETTINGS]
    return [f"--TEXT_DATA_DIR={common.TRAIN_TAR}", "--CORPUS_URL=", f"--CACHE_DIR={common.CACHE}"]


def train(side, seed, shared, label, made_only=False):
    """One run of one side with one seed, in a subprocess; returns its metrics.json (reused when made).

    With ``made_only``, a run not made yet is not trained: None.
    """
    script, extra = SIDES[side]
    out = WORK / label / f"{side}-{seed}"
    path = out / script / "metrics.json"
    if path.exists() and "val_accuracy_by_epoch" in (metrics := json.loads(path.read_text())):
        return metrics
    if made_only:
        return None
    command = [sys.executable, f"{script}.py", *shared, *extra, f"--SEED={seed}", f"--OUTPUT_DIR={out}"]
    print(f"  {side}, SEED {seed}: {' '.join(command[1:])}", flush=True)
    started = time.perf_counter()
    common.run(command)
    metrics = json.loads(path.read_text())
    print(f"    final {metrics['val_accuracy']:.4f}, best {metrics['best_val_accuracy']:.4f} "
          f"(epoch {metrics['best_epoch']}), {time.perf_counter() - started:,.0f} s", flush=True)
    return metrics


def spread(values):
    """Mean, sample sd (0 for one value), min and max of ``values``."""
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "min": min(values), "max": max(values), "n": len(values)}


def summarize(runs):
    """Per side: the spread of final and best validation accuracy over seeds, and each seed's figures."""
    return {side: {"final": spread([m["val_accuracy"] for m in by_seed.values()]),
                   "best": spread([m["best_val_accuracy"] for m in by_seed.values()]),
                   "runs": {seed: {"final": m["val_accuracy"], "best": m["best_val_accuracy"],
                                   "best_epoch": m["best_epoch"], "by_epoch": m["val_accuracy_by_epoch"],
                                   "train_seconds": m["train_seconds"]} for seed, m in by_seed.items()}}
            for side, by_seed in runs.items()}


def machine():
    """Where the runs ran: what repeats exactly depends on it (docs/accuracy.md)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": cpu_model(), "cores": cores,
            "intra_op_threads": int(os.environ.get("TF_NUM_INTRAOP_THREADS") or 0) or cores}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 seeds, 1 epoch, a tiny generated corpus")
    parser.add_argument("--seeds", help="comma-separated seeds (default: 1337,2,3; --quick: 1337,2)")
    parser.add_argument("--sides", default="baseline,external,like",
                        help="comma-separated, of baseline, external, like (default: all three)")
    parser.add_argument("--made-only", action="store_true",
                        help="train nothing: summarize the runs already made (while others still run)")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    seeds = [int(s) for s in (args.seeds or ("1337,2" if args.quick else "1337,2,3")).split(",")]
    sides = args.sides.split(",")
    if unknown := set(sides) - set(SIDES):
        parser.error(f"unknown sides {', '.join(sorted(unknown))}; pick from {', '.join(SIDES)}")
    shared, label = settings(args.quick), "quick" if args.quick else "real"
    print(f"{len(seeds)} seeds x {len(sides)} sides on {'a tiny corpus' if args.quick else common.TRAIN_TAR}; "
          f"{machine()}", flush=True)
    runs = {side: {} for side in sides}
    # Like for like last: it repeats the baseline's inputs, so the other two sides come first.
    for side, seed in sorted(((side, seed) for side in sides for seed in seeds),
                             key=lambda p: (p[0] == "like", seeds.index(p[1]), sides.index(p[0]))):
        if (metrics := train(side, seed, shared, label, args.made_only)) is not None:
            runs[side][seed] = metrics
    runs = {side: by_seed for side, by_seed in runs.items() if by_seed}
    if not runs:
        parser.error("no runs made yet")
    summary = summarize(runs)
    made = [seed for seed in seeds if any(seed in by_seed for by_seed in runs.values())]
    figures = {"machine": machine(), "seeds": made, "settings": shared,
               "versions": next(iter(next(iter(runs.values())).values())).get("versions"),
               "commands": {side: f"python {SIDES[side][0]}.py {' '.join(shared + SIDES[side][1])} --SEED=<seed>"
                            for side in runs},
               "sides": summary}
    print_table(figures)
    out = common.RESULTS / f"seeds-{label}.json"
    for path in filter(None, (out, args.json)):
        Path(path).write_text(json.dumps(figures, indent=1) + "\n")
    return figures


def print_table(figures):
    seeds = ", ".join(map(str, figures["seeds"]))
    print(f"\nValidation accuracy over SEED {seeds} on {figures['machine']['cpu']} "
          f"({figures['machine']['cores']} cores, {figures['machine']['intra_op_threads']} threads):")
    for side, s in figures["sides"].items():
        per_seed = "; ".join(f"{seed}: {r['final']:.4f} / {r['best']:.4f} (epoch {r['best_epoch']})"
                             for seed, r in s["runs"].items())
        for which in ("final", "best"):
            f = s[which]
            print(f"  {side:9} {which:5}  mean {f['mean']:.4f}  sd {f['sd']:.4f}  min {f['min']:.4f}  "
                  f"max {f['max']:.4f}")
        print(f"  {'':9} per seed, final / best: {per_seed}")


if __name__ == "__main__":
    main()
