"""Tokenizer specs against the originals on the real 20 Newsgroups train split: same ids, and texts/s.

* TextVectorization: keras-io's layer (max_tokens=20000, output_sequence_length=200), adapted on
  the corpus and called on every text at once (TensorFlow), vs ``text.specs``' tokenizer of it
  (Python, no TensorFlow), as the Predictor runs it.
* Keras 2: tf-keras's ``Tokenizer(num_words=20000)`` fitted on the corpus, with
  ``pad_sequences(maxlen=1000)``, vs the spec's tokenizer.

Both sides must give identical ids on every document; the throughput is informative (the goal:
the spec no slower than 0.5x the original, so that dropping TensorFlow from serving costs little).

Run: python bench/bench_tokenizers.py [--quick]
"""

import sys
import tempfile
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402


def compare(name, original, spec_tokenizer, texts, repeats):
    """Rows for one tokenizer: the ids agree on every text, and both sides' texts/s."""
    expected, ours = original(), spec_tokenizer.ids(texts)
    mismatched = int((expected != ours).any(axis=1).sum())
    times = common.alternate({"original": original, "spec": lambda: spec_tokenizer.ids(texts)}, repeats)
    rate = {side: len(texts) / common.median(seconds) for side, seconds in times.items()}
    ratio = rate["spec"] / rate["original"]
    return [common.row(f"{name}: texts whose ids differ", "0", str(mismatched), "", "0", mismatched == 0,
                       f"{len(texts):,} documents"),
            common.row(f"{name}: texts/s", f"{rate['original']:,.0f}", f"{rate['spec']:,.0f}", f"{ratio:.2f}x",
                       ">= 0.5x", ratio >= 0.5)]


def main(argv=None):
    args = common.parse_args(__doc__.splitlines()[0], argv)
    import keras
    from tf_keras.preprocessing.sequence import pad_sequences
    from tf_keras.preprocessing.text import Tokenizer

    from external_embeddings.text import specs

    corpus = common.load_texts(1000 if args.quick else None)
    texts = corpus.texts if corpus else [f"demo text {i} with Words, and PUNCTUATION!" for i in range(500)]
    repeats = 1 if args.quick else 3
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        layer = keras.layers.TextVectorization(max_tokens=20000, output_sequence_length=200)
        layer.adapt(texts, batch_size=len(texts))
        spec, vocabulary = specs.spec_from_text_vectorization(layer)
        specs.write_spec_files(folder, spec, vocabulary)
        rows += compare("TextVectorization", lambda: keras.ops.convert_to_numpy(layer(texts)),
                        specs.load_tokenizer(folder, spec), texts, repeats)
        tokenizer = Tokenizer(num_words=20000)
        tokenizer.fit_on_texts(texts)
        spec, word_index = specs.spec_from_keras2_json(tokenizer.to_json(), "tokenizer", 1000)
        specs.write_spec_files(folder, spec, word_index)
        rows += compare("Keras 2 Tokenizer", lambda: pad_sequences(tokenizer.texts_to_sequences(texts), maxlen=1000),
                        specs.load_tokenizer(folder, spec), texts, repeats)
    common.print_rows(f"Tokenizer specs vs originals ({'20 Newsgroups train' if corpus else 'demo texts'})", rows)
    return common.save_json(args, {"rows": rows, "documents": len(texts)})


if __name__ == "__main__":
    main()
