"""Goal 4: predicting the same texts with K = 8 models, one shared mapping vs one per model.

* External: ``Predictor`` over a folder of 8 external models: texts are tokenized and mapped
  to vectors once, then every model runs on that one array.
* Baseline: what a server of 8 baseline models does: tokenize once (the tokenizer is the same),
  then per model map the tokens through that model's own word index and run it on the ids
  (its Embedding turns them into vectors). It returns the same per-text results as Predictor.

Both handle the texts in chunks of Predictor's BATCH_TEXTS and are warmed up once before the
timed runs. Goal: external throughput >= 1.0x the baseline's.

Run: python bench/bench_predict.py [--quick]
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


class BaselineServer:
    """K baseline models, each with its own word index, answering like ``Predictor.predict``."""

    def __init__(self, model_dirs):
        from external_embeddings.models.model import load_model, read_manifest

        self.models = {d.name: (load_model(d), read_manifest(d), json.loads((d / "word_index.json").read_text()))
                       for d in model_dirs}

    def predict(self, texts):
        from external_embeddings.text import tokenizer
        from external_embeddings.predictor import BATCH_TEXTS

        results = []
        for start in range(0, len(texts), BATCH_TEXTS):
            tokens = [tokenizer.tokenize(t) for t in texts[start:start + BATCH_TEXTS]]
            per_model = {}
            for name, (model, manifest, word_index) in self.models.items():
                ids = tokenizer.pad([tokenizer.to_ids(t, word_index) for t in tokens], manifest["sequence_length"])
                per_model[name] = (np.asarray(model.predict_on_batch(ids)), manifest["labels"])
            for i in range(len(tokens)):
                results.append({name: {"label": labels[int(np.argmax(p[i]))], "probability": float(np.max(p[i])),
                                       "probabilities": dict(zip(labels, map(float, p[i])))}
                                for name, (p, labels) in per_model.items()})
        return results


def main(argv=None):
    args = common.parse_args(__doc__.splitlines()[0], argv)
    import tensorflow as tf

    from external_embeddings.predictor import BATCH_TEXTS, Predictor

    count, repeats = (128, 1) if args.quick else (512, 7)  # a run is ~1.3 s and noisy: 7 runs
    store = common.glove_store()
    dirs = common.make_models(store)
    corpus = common.load_texts(count)
    texts = corpus.texts if corpus else common.generated_texts(store, count)
    source = "20 Newsgroups train documents" if corpus else "generated texts"

    external = Predictor(store, dirs["external"][0].parent)
    baseline = BaselineServer(dirs["baseline"])
    # Trace each model's predict function (for the chunk shape used) outside the timing.
    tf.get_logger().setLevel("ERROR")  # one trace per model is expected, not a retracing problem
    for server in (baseline, external):
        server.predict(texts[:BATCH_TEXTS])
    times = common.alternate({"baseline": lambda: baseline.predict(texts),
                              "external": lambda: external.predict(texts)}, repeats)
    k = len(external.models)
    base_s, ext_s = common.median(times["baseline"]), common.median(times["external"])
    figures = {"texts": len(texts), "models": k, "source": source, "baseline_seconds": base_s,
               "external_seconds": ext_s, "baseline_texts_per_second": len(texts) / base_s,
               "external_texts_per_second": len(texts) / ext_s, "speedup": base_s / ext_s}
    f = figures
    figures["rows"] = [common.row(
        f"predict {f['texts']:,} {source} with K={k} models (texts/s)", f"{f['baseline_texts_per_second']:,.1f}",
        f"{f['external_texts_per_second']:,.1f}", f"{f['speedup']:,.2f}x", ">= 1.0x", f["speedup"] >= 1.0)]
    common.print_rows(f"Prediction (medians of {repeats})", figures["rows"])
    return common.save_json(args, figures)


if __name__ == "__main__":
    main()
