"""``externalize``: turn a text model someone already has into an external model served from a store.

The model's frozen Embedding is replaced by the store: each of its rows is matched with the
store's vector for the row's word (embedding_rows.py), the layers after it are rebuilt to take
the vectors (rebuild.py), and the tokenizer becomes a spec (text/specs.py). Nothing is written
until the original and the new model agree on every probability within ``CHECK_TOLERANCE``.
"""

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import atomic_dir
from ..errors import InputError
from ..text.text_files import file_lines
from .embedding_rows import describe_differences, match_rows
from .externalized_folder import mapped_vectors
from .model import MANIFEST_FILE, MODEL_FILE, load_model
from .rebuild import rebuild
from .source_model import Graph, load_source, refs_in

CHECK_TOLERANCE = 1e-5
ROWS_FILE, KEPT_FILE = "rows.npy", "kept_rows.npz"
BATCH = 256
OUTPUT_ACTIVATIONS = ("softmax", "sigmoid")


def after_model_saved(model, model_dir, output):
    """Once ``model.keras`` is written into the (still temporary) output folder: ``model.onnx``
    beside it, as a script's save writes it, checked against the model within 1e-5. Returns the
    manifest's ``"onnx"`` entry, or None after one line saying the model will run on Keras."""
    from .onnx_export import export_quietly

    return export_quietly(model, model_dir, output)


def _name(layer):
    return type(layer).__name__


@dataclass
class Parts:
    """Where the text enters a model: its TextVectorization (or None), its Embedding, and the rest."""

    vectorizer: object
    embedding: object
    after: list
    output: object


def find_parts(graph, where):
    """The TextVectorization (or None), the one Embedding fed by the token ids, and the calls after it."""
    embeddings = [c for c in graph.calls if _name(c.layer) == "Embedding"]
    if len(embeddings) != 1:
        names = ", ".join(repr(c.layer.name) for c in embeddings)
        raise InputError(where, f"has {len(embeddings)} Embedding layers{' (' + names + ')' if names else ''}",
                         "externalize takes a model with exactly one Embedding, the one that maps the token ids")
    if len(graph.inputs) != 1:
        raise InputError(where, f"takes {len(graph.inputs)} inputs", "externalize takes models of one text input")
    if len(graph.outputs) != 1:
        raise InputError(where, f"has {len(graph.outputs)} outputs",
                         "externalize takes classifiers with one softmax or sigmoid output")
    embedding, text = embeddings[0], graph.inputs[0]
    vectorizers = [c for c in graph.calls if _name(c.layer) == "TextVectorization"]
    fed = refs_in(embedding.args)
    producer = {r: c for c in graph.calls for r in c.outputs}
    if vectorizers:
        vectorizer = vectorizers[0]
        if len(vectorizers) > 1 or refs_in(vectorizer.args) != [text] or fed != vectorizer.outputs[:1]:
            raise InputError(where, f"has an Embedding ({embedding.layer.name!r}) that is not fed by the token ids "
                             "of its one TextVectorization", "externalize takes models whose Embedding maps the "
                             "token ids of the text input")
    else:
        vectorizer = None
        if fed != [text]:
            source = producer[fed[0]].layer.name if fed and fed[0] in producer else "more than one tensor"
            raise InputError(where, f"has an Embedding ({embedding.layer.name!r}) that is not fed by the token ids "
                             f"(it takes the output of {source!r})",
                             "externalize takes models whose Embedding maps the token ids of the text input")
    reached, after = set(embedding.outputs), []
    for call in graph.calls:
        if set(refs_in([call.args, call.kwargs])) & reached:
            after.append(call)
            reached.update(call.outputs)
        elif call is not embedding and call is not vectorizer:
            raise InputError(where, f"has a layer {call.layer.name!r} ({_name(call.layer)}) that does not work on "
                             "the Embedding's output", "externalize takes models whose only text path is the Embedding")
    if graph.outputs[0] not in reached:
        raise InputError(where, "has an output that does not depend on its Embedding", "give a text classifier")
    last = producer[graph.outputs[0]].layer
    config = last.get_config()
    activation = "softmax" if _name(last) == "Softmax" else config.get("activation")
    if activation not in OUTPUT_ACTIVATIONS:
        raise InputError(where, f"ends in {_name(last)} {last.name!r} with activation {activation!r}, not a classifier",
                         "externalize takes classifiers with one softmax or sigmoid output")
    return Parts(vectorizer, embedding, after, graph.outputs[0])


@dataclass
class Tokenization:
    spec: dict
    vocabulary: object     # the list or dict write_spec_files writes
    words: list            # model id -> word ("" padding, None: an id the tokenizer never gives)
    length: int
    original_ids: object   # texts -> (N, L) ids as the original computes them


def _vectorizer_tokenization(model_path, layer):
    from ..text.specs import spec_from_text_vectorization

    spec, vocabulary = spec_from_text_vectorization(layer)

    def original_ids(texts):
        import tensorflow as tf

        return np.asarray(layer(tf.constant(texts, dtype=tf.string)), dtype=np.int64)

    return Tokenization(spec, vocabulary, list(vocabulary), int(spec["output_sequence_length"]), original_ids)


def _keras2_tokenization(path, maxlen, padding, truncating):
    from ..text.specs import spec_from_keras2_json

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(path, "does not exist", "give the file Tokenizer.to_json() wrote") from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(path, f"cannot be read ({e})", "give the file Tokenizer.to_json() wrote") from None
    if maxlen is None:
        raise InputError("command line", "--tokenizer needs --maxlen", "give the maxlen the model's pad_sequences used")
    spec, word_index = spec_from_keras2_json(text, path, maxlen, padding, truncating)
    limit = spec.get("num_words")
    reachable = {i: w for w, i in word_index.items() if limit is None or i < limit}
    words = [None] * (max(reachable, default=0) + 1)
    words[0] = ""
    for i, w in reachable.items():
        words[i] = w

    def original_ids(texts):
        import tf_keras

        tokenizer = tf_keras.preprocessing.text.tokenizer_from_json(text)
        return tf_keras.utils.pad_sequences(tokenizer.texts_to_sequences(texts), maxlen=maxlen, padding=padding,
                                            truncating=truncating).astype(np.int64)

    return Tokenization(spec, word_index, words, maxlen, original_ids)


def _original_predictions(source, parts, texts):
    """The original model's probabilities on ``texts`` (strings in, when it holds its TextVectorization)."""
    import tensorflow as tf

    model = source.model
    if parts.vectorizer is not None:
        x = tf.constant(texts, dtype=tf.string)
        if len(model.inputs[0].shape) == 2:
            x = x[:, None]
    else:
        x = texts  # ids, made by the original tokenizer
    return np.asarray(model(x, training=False), dtype=np.float64)


def sample_texts(words, zero_words, length, seed=0):
    """Texts to compare the two models on when no --check file is given: words of the model's
    vocabulary, words it has no vector for, unknown words, empty texts and texts too long."""
    rng = np.random.default_rng(seed)
    unknown = ["zqxjvv", "blorptastic", "xxyyzz"]

    def text(n, pool):
        return " ".join(rng.choice(pool, n)) if pool and n else ""

    texts = ["", " ", "zqxjvv", "!!! ??? ...", text(1, words), text(2, words)]
    for n in (3, max(1, length // 2), length - 1, length, length + 1, 2 * length + 5, 3):
        texts += [text(n, words), text(n, words + unknown), text(n, words + zero_words)]
    texts += [text(5, zero_words), text(length + 3, zero_words), text(4, unknown)]
    texts += [t.upper() + "!" for t in texts[6:12]] + [", ".join(text(6, words).split())]
    return texts


def _check_texts(path):
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "does not exist or is not a file", "give a file with one text per line")
    texts = [text for _, text in file_lines(path)]
    if not texts:
        raise InputError(path, "holds no texts", "write one text per line")
    return texts


def _labels(path, count):
    if path is None:
        return [str(i) for i in range(count)]
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "does not exist or is not a file", "give a file with one label per line")
    labels = [text.strip() for _, text in file_lines(path) if text.strip()]
    if len(labels) != count:
        raise InputError(path, f"names {len(labels)} labels but the model has {count} outputs",
                         "give one label per output, in the model's order")
    return labels


def _compare(source, parts, tokenization, model, store, match, texts, model_dir, spec):
    """The largest difference between the original's and the new model's probabilities on ``texts``."""
    from ..text.specs import load_tokenizer

    tokenizer = load_tokenizer(model_dir, spec)
    worst = 0.0
    for start in range(0, len(texts), BATCH):
        chunk = texts[start:start + BATCH]
        ids = np.asarray(tokenizer.ids(chunk), dtype=np.int64)
        original_ids = tokenization.original_ids(chunk)
        if ids.shape != original_ids.shape or (ids != original_ids).any():
            bad = next(i for i in range(len(chunk)) if ids.shape != original_ids.shape
                       or (ids[i] != original_ids[i]).any())
            raise InputError(f"check text {start + bad + 1}", f"{chunk[bad][:60]!r} gets other token ids from the "
                             "tokenizer spec than from the original tokenizer", "report this: it is a bug")
        original = _original_predictions(source, parts, chunk if parts.vectorizer is not None else original_ids)
        inputs = {"vectors": mapped_vectors(store, match.rows, match.kept_ids, match.kept_vectors, ids)}
        if len(model.inputs) == 2:
            inputs["mask"] = ids != 0
        else:
            inputs = inputs["vectors"]
        new = np.asarray(model(inputs, training=False), dtype=np.float64)
        worst = max(worst, float(np.abs(original - new).max()))
    return worst


def _dir_bytes(path):
    return sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file())


def externalize(model_path, store, output, tokenizer=None, maxlen=None, padding=None, truncating=None,
                labels=None, keep_rows=False, check=None):
    """Write the external form of ``model_path`` into ``output``; returns the figures report() prints."""
    from ..store.embedding_store import EmbeddingStore

    started = time.perf_counter()
    output = Path(output)
    if output.exists():
        raise InputError(output, "already exists", "give a new folder: externalize never overwrites one")
    if not isinstance(store, EmbeddingStore):
        store = EmbeddingStore.open(store, verify=True)
    texts = _check_texts(check)
    source = load_source(model_path)
    where = source.path
    parts = find_parts(Graph(source.model, where), where)
    given = [name for name, value in (("--tokenizer", tokenizer), ("--maxlen", maxlen), ("--padding", padding),
                                      ("--truncating", truncating)) if value is not None]
    if parts.vectorizer is not None and given:
        raise InputError("command line", f"{', '.join(given)} given, but {where} holds its own TextVectorization, "
                         "which says how it tokenizes", f"leave out {', '.join(given)}")
    if parts.vectorizer is None and tokenizer is None:
        raise InputError(where, "takes token ids, not text", "give --tokenizer tokenizer.json (Tokenizer.to_json()) "
                         "and --maxlen, --padding, --truncating as the model's pad_sequences used them")
    tokenization = (_vectorizer_tokenization(where, parts.vectorizer.layer) if parts.vectorizer is not None
                    else _keras2_tokenization(tokenizer, maxlen, padding or "pre", truncating or "pre"))
    matrix = np.asarray(parts.embedding.layer.get_weights()[0], dtype=np.float32)
    rows, dim = matrix.shape
    tokenizer_where = tokenizer or where
    if len(tokenization.words) > rows:
        raise InputError(tokenizer_where, f"gives token ids up to {len(tokenization.words) - 1:,} but the model's "
                         f"Embedding has {rows:,} rows: it is not this model's tokenizer",
                         "give the tokenizer the model was trained with")
    fixed = None if parts.vectorizer is not None else tuple(source.model.inputs[0].shape)[1:]
    fixed = fixed[0] if fixed and len(fixed) == 1 else None
    if fixed is not None and fixed != tokenization.length:
        raise InputError(tokenizer_where, f"makes sequences of {tokenization.length} ids but the model takes {fixed}",
                         f"give --maxlen {fixed}")
    if store.dim != dim:
        raise InputError(store.path, f"holds vectors of dimension {store.dim}, but the model's Embedding has {dim}",
                         "give the store of the vectors the model was built with")
    match = match_rows(matrix, tokenization.words, store)
    if len(match.kept_ids) and not keep_rows:
        raise InputError(where, describe_differences(match, store.path),
                         f"give --keep-rows to keep those rows beside the model ({match.kept_bytes:,} bytes)")
    mask = bool(getattr(parts.embedding.layer, "mask_zero", False))
    model = rebuild(parts.embedding.outputs[0], parts.after, parts.output, source.framework, tokenization.length,
                    dim, mask, where)
    if len(model.output_shape) != 2:
        raise InputError(where, f"has an output of shape {model.output_shape}, not (batch, labels)",
                         "externalize takes classifiers with one softmax or sigmoid output")
    label_names = _labels(labels, int(model.output_shape[-1]))
    if texts is None:
        zero_words = [w for i, w in enumerate(tokenization.words) if i and w and not matrix[i].any()][:200]
        known = [w for w in tokenization.words[1:] if w and w != "[UNK]"]
        texts = sample_texts(known[:5000], zero_words, tokenization.length)
    from ..text.specs import write_spec_files

    with atomic_dir(output) as tmp:
        write_spec_files(tmp, tokenization.spec, tokenization.vocabulary)
        np.save(tmp / ROWS_FILE, match.rows)
        if len(match.kept_ids):
            np.savez(tmp / KEPT_FILE, ids=match.kept_ids, vectors=match.kept_vectors)
        model.save(tmp / MODEL_FILE)
        onnx = after_model_saved(model, tmp, output)
        saved = load_model(tmp)  # what predict and serve will load, in safe mode
        worst = _compare(source, parts, tokenization, saved, store, match, texts, tmp, tokenization.spec)
        if not worst <= CHECK_TOLERANCE:
            raise InputError(where, f"and its externalized form differ by up to {worst:.3g} in a probability "
                             f"(more than {CHECK_TOLERANCE:g}) on {len(texts):,} texts; nothing was written",
                             "use the store of the vectors the model was built with (a float32 one)"
                             if store.manifest["dtype"] != "float32" else "report this: it is a bug")
        details = {"framework": source.framework, "embedding": parts.embedding.layer.name, "rows": rows, "dim": dim,
                   "from_store": match.from_store, "zero": match.zero, "unused": match.unused,
                   "kept": int(len(match.kept_ids)), "kept_bytes": match.kept_bytes,
                   "max_row_diff": match.max_diff, "row_tolerance": "1e-6 + the store's rounding",
                   "check_texts": len(texts), "max_probability_diff": worst,
                   "embedding_bytes": int(matrix.nbytes)}
        manifest = {"kind": "external", "tokenizer": tokenization.spec, "sequence_length": tokenization.length,
                    "labels": label_names, "store": store.describe(), "rows": ROWS_FILE,
                    "kept_rows": KEPT_FILE if len(match.kept_ids) else None, "mask": mask,
                    "source": {"file": source.path.name, "sha256": source.sha256}, "externalized": details}
        if onnx is not None:
            manifest["onnx"] = onnx
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
    return {**details, "model": str(source.path), "output": str(output), "store": str(store.path),
            "original_bytes": source.path.stat().st_size, "output_bytes": _dir_bytes(output),
            "seconds": time.perf_counter() - started}


def report(figures):
    """The lines ``externalize`` prints."""
    saved = figures["original_bytes"] - figures["output_bytes"]
    kept = f", {figures['kept']:,} kept beside it ({figures['kept_bytes']:,} bytes)" if figures["kept"] else ""
    return (f"Externalized {figures['model']} into {figures['output']} in {figures['seconds']:,.1f} s.\n"
            f"Embedding {figures['embedding']!r} ({figures['rows']:,} x {figures['dim']}): {figures['from_store']:,} "
            f"rows from {figures['store']}, {figures['zero']:,} zero, {figures['unused']:,} unused{kept}.\n"
            f"Predictions on {figures['check_texts']:,} texts: max difference {figures['max_probability_diff']:.2g} "
            f"(<= {CHECK_TOLERANCE:g}).\n"
            f"Bytes: original {figures['original_bytes']:,}, externalized folder {figures['output_bytes']:,} "
            f"(plus the shared store), saved {saved:,}.")
