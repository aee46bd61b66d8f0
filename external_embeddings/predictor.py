"""Serve K models from one store: texts are tokenized once and mapped to vectors once.

The one core of the ``predict`` command and the HTTP server. Every external model must have
been trained with this store (same fingerprint and dim) and the same tokenizer. Models may
differ in sequence length: with pre-padding and pre-truncation, the input for a shorter length
is the tail of the longest one, so one mapping still serves all. Models may also differ in
vocabulary (``STORE_VOCABULARY=false`` keeps the baseline's words): texts are then mapped once
per distinct vocabulary, since each drops other words.

Baseline models (a frozen ``Embedding`` inside, ``word_index.json`` beside) are served too, so
users can move one model at a time: each maps the tokens through its own word index to int ids
and is its own group. Its vectors are inside it, so it needs no store at predict time and is
not checked against this one (its manifest still names the store it was built from, which
``describe`` reports); it must share the tokenizer settings.

Externalized models (``externalize``: an existing model whose Embedding became a mapping into
this store) bring their own tokenizer as a spec (``text.specs``) and ``rows.npy``. They are
grouped by tokenizer and mapping: each text is tokenized once per distinct tokenizer and
mapped to vectors once per distinct mapping; each model then takes its own length and padding
side from that mapping, and, when it has one, a mask input (ids != 0).

The models run on a runtime (``runtime/``): Keras by default, or ONNX Runtime. Neither is
imported before the first model loads, so that the server's parent process can check manifests
without them, and nothing here imports Keras on the ONNX path: a worker serving ONNX models
never starts TensorFlow.
"""

import itertools
import os
from pathlib import Path

import numpy as np

from .text import tokenizer
from .errors import InputError
from .models.externalized_folder import (Externalized, check_budget, check_fields, is_externalized,
                                         read_externalized)
from .models.model import MANIFEST_FILE, MODEL_FILE, check_model_file, read_json, read_manifest
from .runtime import open_runtime

BASELINE_INDEX = "word_index.json"
BATCH_TEXTS = 256  # texts mapped and run at a time, so memory stays flat for any number of texts


def walk_models(models_dir, loops="error"):
    """Yield (folder, its file names) for ``models_dir`` and every folder below it, in name order.

    Links to folders are followed, as users pick model versions with a folder of links (``rglob``
    and ``os.walk`` skip them without a word). A link to a folder above it would be walked forever:
    with ``loops="error"`` it is an InputError naming it, with ``loops="skip"`` it is left out.
    Hidden entries are skipped: an interrupted or concurrent save leaves ``.NAME.partial-*`` and
    ``.NAME.old-*`` folders beside a run, and they are not models. A folder that vanishes while
    it is walked is left out (the server's next poll sees the rest).
    """
    def walk(folder, above):
        try:
            entries = sorted((e for e in os.scandir(folder) if not e.name.startswith(".")), key=lambda e: e.name)
        except (FileNotFoundError, NotADirectoryError):
            return
        except OSError as e:
            if loops == "skip":
                return
            raise InputError(folder, f"cannot be read ({e.strerror or e})", "check the folder's permissions") from None
        files, folders = [], []
        for entry in entries:
            try:
                stat = os.stat(entry.path) if entry.is_dir() else None  # both follow a link
            except OSError:  # a broken link, or one removed meanwhile: a file, as os.walk counts it
                stat = None
            if stat is None:
                files.append(entry.name)
            else:
                folders.append((Path(entry.path), stat))
        yield Path(folder), files
        for sub, stat in folders:
            identity = (stat.st_dev, stat.st_ino)
            if identity in above:
                if loops == "skip":
                    continue
                raise InputError(sub, f"links to {os.path.realpath(sub)}, a folder above it, so the models "
                                 "folder has no end", "remove the link, or point it at a folder outside its parents")
            yield from walk(sub, above | {identity})

    root_stat = os.stat(models_dir)
    yield from walk(Path(models_dir), frozenset({(root_stat.st_dev, root_stat.st_ino)}))


def find_model_dirs(models_dir):
    """Every folder under ``models_dir`` (itself included) that holds a saved model, through links
    to folders too; hidden folders are skipped (see ``walk_models``)."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        raise InputError(models_dir, "is not a folder" if models_dir.exists() else "does not exist",
                         "give the folder holding the trained models")
    found = sorted(folder for folder, files in walk_models(models_dir) if MODEL_FILE in files)
    if not found:
        raise InputError(models_dir, f"holds no {MODEL_FILE}",
                         "train one with pretrained_external_word_embeddings.py and point --models at its OUTPUT_DIR")
    return found


def check_manifest(manifest, where, store):
    """Refuse a model of an unknown kind, an external one trained with another store, or a missing field."""
    if not isinstance(manifest, dict) or not isinstance(manifest.get("store", {}), dict):
        raise InputError(where, "is not a model manifest", "re-run the script that wrote it")
    if manifest.get("kind") not in ("external", "baseline"):
        raise InputError(where, f"is a {manifest.get('kind', 'unknown')} model, not an external or baseline one",
                         "serve only models from the two scripts")
    trained = manifest.get("store", {})
    if manifest["kind"] == "external" and (trained.get("fingerprint") != store.fingerprint
                                           or trained.get("dim") != store.dim):
        raise InputError(where, f"was trained with store {trained.get('path')} (fingerprint "
                         f"{str(trained.get('fingerprint'))[:12]}, dim {trained.get('dim')}), not with "
                         f"{store.path} (fingerprint {store.fingerprint[:12]}, dim {store.dim})",
                         "open the store it was trained with, or retrain it on this one")
    if is_externalized(manifest):
        check_fields(manifest, where)
    elif manifest.get("tokenizer") != tokenizer.SETTINGS:
        raise InputError(where, "uses other tokenizer settings than this version", "retrain it with this version")
    length, labels = manifest.get("sequence_length"), manifest.get("labels")
    if type(length) is not int or length < 1:
        raise InputError(where, f"has no valid sequence_length (got {length!r})", "re-run the script that wrote it")
    if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
        raise InputError(where, "has no list of label names", "re-run the script that wrote it")


def check_model(info, manifest, where, dim):
    """Refuse a model whose real input or output shape disagrees with its manifest."""
    length, labels = manifest["sequence_length"], manifest["labels"]
    expected = (length,) if manifest["kind"] == "baseline" else (length, dim)
    if is_externalized(manifest):
        check_inputs(info, manifest, where, dim)
    elif tuple(info.input_shape) != expected:
        raise InputError(where, f"takes inputs of shape {tuple(info.input_shape)}, but its manifest says "
                         f"{manifest['kind']} input of shape {expected}", "re-run the script that wrote it")
    if tuple(info.output_shape) != (len(labels),):
        raise InputError(where, f"has {info.output_shape[-1]} outputs but its manifest names {len(labels)} labels",
                         "re-run the script that wrote it")


def check_inputs(info, manifest, where, dim):
    """Refuse an externalized model whose inputs are not the vectors (L, dim) and, with a mask, the mask (L,)."""
    length = manifest["sequence_length"]
    expected = {"vectors": (length, dim), **({"mask": (length,)} if manifest["mask"] else {})}
    found = dict(zip(info.input_names, map(tuple, info.input_shapes)))
    if found != expected:
        shown = ", ".join(f"{name} {shape}" for name, shape in found.items())
        wanted = ", ".join(f"{name} {shape}" for name, shape in expected.items())
        raise InputError(where, f"has a model taking {shown}, but its manifest says {wanted}", "externalize it again")


def read_vocabulary(model_dir, manifest):
    """The words a model knows: None for every word of the store, a set read from its file, for
    a baseline its ``{word: id}`` word index, or for an externalized model its ``Externalized``."""
    if is_externalized(manifest):
        return read_externalized(model_dir, manifest, Path(model_dir) / MANIFEST_FILE)
    name = manifest.get("vocabulary")
    if manifest["kind"] == "baseline":
        return read_word_index(model_dir, name or BASELINE_INDEX)
    if name == "store":
        return None
    where = Path(model_dir) / MANIFEST_FILE
    if not isinstance(name, str) or Path(name).name != name or not name.endswith(".json"):
        raise InputError(where, f"names no vocabulary (got {name!r}): it was saved by an older version",
                         "retrain it with this version")
    path = Path(model_dir) / name
    words = read_json(path)
    if not isinstance(words, list) or not all(isinstance(word, str) for word in words):
        raise InputError(path, "is not a list of words", "re-run the script that wrote it")
    return frozenset(words)


def read_word_index(model_dir, name):
    """A baseline's ``{word: id}`` (ids 1, 2, ...), checked so that a bad file is an error here,
    not an out-of-range id inside the model's Embedding at predict time."""
    if not isinstance(name, str) or Path(name).name != name:
        raise InputError(Path(model_dir) / MANIFEST_FILE, f"names no word index (got {name!r})",
                         "re-run the script that wrote it")
    path = Path(model_dir) / name
    index = read_json(path)
    if not isinstance(index, dict) or not all(type(i) is int and i >= 1 for i in index.values()):
        raise InputError(path, "is not a {word: id >= 1} index", "re-run the script that wrote it")
    return index


def check_embedding(info, word_index, where):
    """Refuse a baseline whose word index holds ids beyond its Embedding's rows."""
    top = max(word_index.values(), default=0)
    if info.embedding_rows is not None and top >= info.embedding_rows:
        raise InputError(where, f"has a word index up to id {top:,} but an Embedding of {info.embedding_rows:,} rows",
                         "re-run the script that wrote it")


def embedding_matrix(model):
    """A baseline's frozen Embedding weights, as numpy (Keras models only)."""
    import keras

    layer = next(layer for layer in model.layers if isinstance(layer, keras.layers.Embedding))
    return keras.ops.convert_to_numpy(layer.embeddings)


def _layout(tok):
    """Which padded layout a tokenizer's ids share: with padding and truncation on one side, a
    shorter length is the head ("post") or tail ("pre") of a longer one; with mixed sides it is not."""
    return (tok.padding, tok.truncating) if tok.padding == tok.truncating else (tok.padding, tok.truncating, tok.length)


def top_labels(probabilities, labels, k):
    """The ``k`` most probable labels, best first, as ``[{"label", "probability"}]``."""
    best = np.argsort(-probabilities, kind="stable")[:k]
    return [{"label": labels[i], "probability": float(probabilities[i])} for i in best]


class Predictor:
    """One store and K models; ``predict(texts)`` runs every model on one shared mapping.

    ``runtime`` runs the models: "keras" (the default) or "onnx" (see ``runtime.open_runtime``
    for ``threads`` and ``fuse``). A model that ONNX cannot run runs on Keras, said in one log line.
    """

    def __init__(self, store, models_dir, runtime=None, threads=None, fuse=True):
        self.store, self.models, self.info, self._with_vector = store, {}, {}, {}
        self.runtimes = open_runtime(runtime, threads, fuse)
        root = Path(models_dir)
        runtime_of = {}
        for model_dir in find_model_dirs(root):
            manifest = read_manifest(model_dir)
            where = model_dir / MANIFEST_FILE
            check_manifest(manifest, where, store)
            vocabulary = read_vocabulary(model_dir, manifest)
            check_model_file(model_dir)
            name = model_dir.relative_to(root).as_posix() if model_dir != root else root.resolve().name
            runtime_of[name], model, info = self.runtimes.load(model_dir, manifest, where, name)
            check_model(info, manifest, where, store.dim)
            if manifest["kind"] == "baseline":
                check_embedding(info, vocabulary, where)
                # A word of its index whose GloVe vector was missing has a zero row: not a known word.
                self._with_vector[name] = info.with_vector
            self.models[name], self.info[name] = (model, manifest, vocabulary), info
        # External models that know the same words share one mapping, made at the longest of
        # their lengths; each baseline maps through its own word index, so it is its own group.
        # Externalized models with the same tokenizer and the same id -> vector mapping share one.
        self.groups = {}
        for name, (_, manifest, vocabulary) in self.models.items():
            key = ("baseline", name) if manifest["kind"] == "baseline" else vocabulary
            if isinstance(vocabulary, Externalized):
                key = ("externalized", vocabulary.tokenizer.sequence_key, vocabulary.mapping_key)
            self.groups.setdefault(key, []).append(name)
        # Each group's models, run together by their runtime (split by runtime if ONNX could not take some).
        self._runners = {}
        for key, group in self.groups.items():
            by_runtime = {}
            for name in group:
                by_runtime.setdefault(runtime_of[name], []).append(
                    (name, self.models[name][0], self.models[name][1]["sequence_length"]))
            # An externalized group's models take inputs laid out each at its own length and sides
            # (and some a mask too): a runner for each set of models whose inputs are the same.
            externalized = isinstance(key, tuple) and key[0] == "externalized"
            self._runners[key] = [(rt.runner(part), [n for n, _, _ in part]) for rt, members in by_runtime.items()
                                  for part in (self._same_inputs(members) if externalized else [members])]

    def _same_inputs(self, members):
        """An externalized group's models split into sets that take the very same input: the same
        layout, length and input names (a mask or not), so that their runner runs them at once."""
        parts = {}
        for member in members:
            tok = self.models[member[0]][2].tokenizer
            parts.setdefault((_layout(tok), tok.length, self.info[member[0]].input_names), []).append(member)
        return list(parts.values())

    def describe(self):
        """What each model is: kind, labels, sequence length, parameter bytes and its store."""
        return {name: {"kind": manifest["kind"], "labels": manifest["labels"],
                       "sequence_length": manifest["sequence_length"],
                       "parameter_bytes": self.info[name].parameter_bytes, "runtime": self.info[name].runtime,
                       "store": manifest.get("store", {})}
                for name, (_, manifest, _) in self.models.items()}

    def check_request(self, models=None, top_k=None):
        """The model names to run (all by default) after checking ``models`` and ``top_k``."""
        if models is None:
            names = list(self.models)
        else:
            if isinstance(models, str) or not all(isinstance(name, str) for name in models):
                raise InputError("models", "is not a list of model names", "send a list of names from /v1/models")
            names = list(dict.fromkeys(models))
            unknown = [name for name in names if name not in self.models]
            if unknown or not names:
                raise InputError("models", f"names no model {unknown[0]!r}" if unknown else "is empty",
                                 "choose from " + ", ".join(sorted(self.models)))
        if top_k is not None and (type(top_k) is not int or top_k < 1):
            raise InputError("top_k", f"must be a whole number >= 1 (got {top_k!r})", "send e.g. 3")
        return names

    def stream(self, texts, models=None, top_k=None):
        """Yield, for each text in order, ``{model name: {"label", "probability", "probabilities",
        "known_words"}}`` (plus ``"top_k"``, the best labels, when asked), ``BATCH_TEXTS`` at a
        time, so memory stays flat for any number of texts. ``models`` picks a subset by name.

        ``known_words`` counts the words the model has a vector for: 0 means the answer is the
        one for an empty text. The example's CNN never sees the last position of its input, so
        a text needs two known words before its own words count at all. For an externalized
        model it counts the ids of its own input (after its truncation) that are not padding,
        not its OOV id, and stand for a nonzero vector.
        """
        names = self.check_request(models, top_k)
        texts = iter(texts)
        while chunk := list(itertools.islice(texts, BATCH_TEXTS)):
            yield from self._predict_chunk(chunk, names, top_k)

    def predict(self, texts, models=None, top_k=None):
        """The results of ``stream`` as a list."""
        return list(self.stream(texts, models, top_k))

    def _predict_chunk(self, texts, names, top_k):
        tokenizer.check_texts(texts)
        wanted = set(names)
        groups = [(key, [n for n in group if n in wanted]) for key, group in self.groups.items()]
        groups = [(key, group) for key, group in groups if group]
        # The scripts' tokens only when one of the scripts' models runs.
        scripts = any(not isinstance(key, tuple) or key[0] == "baseline" for key, _ in groups)
        tokens = [tokenizer.tokenize(t) for t in texts] if scripts else []
        words = [word for doc in tokens for word in doc]
        # The store lookup is made once for every external model and vocabulary.
        found = self.store.lookup(words) if any(key is None or isinstance(key, frozenset) for key, _ in groups) else {}
        sequences = {}  # each distinct tokenizer's ids of these texts, made once
        per_model = {}
        for key, group in groups:
            inputs, known = self._group_inputs(key, group, tokens, words, found, texts, sequences)
            for name, probabilities in self._run_group(key, group, inputs).items():
                per_model[name] = (probabilities, self.models[name][1]["labels"], known[name])
        # Each model's answers as Python numbers in a few numpy calls, not several per text.
        answers = {name: (p, labels, known, p.argmax(axis=1).tolist(), p.max(axis=1).tolist(), p.tolist())
                   for name, (p, labels, known) in per_model.items()}
        for i in range(len(texts)):
            result = {}
            for name in names:
                p, labels, known, best, top, rows = answers[name]
                result[name] = {"label": labels[best[i]], "probability": top[i],
                                "probabilities": dict(zip(labels, rows[i])), "known_words": known[i]}
                if top_k is not None:
                    result[name]["top_k"] = top_labels(p[i], labels, top_k)
            yield result

    def _group_inputs(self, key, group, tokens, words, found, texts, sequences):
        """The one input a group of models shares, at the longest of their lengths, and ``{name:
        known words per text}``. An externalized group's input is ``{name: its own input}``."""
        if isinstance(key, tuple) and key[0] == "externalized":
            return self._externalized_inputs(group, texts, sequences)
        longest = max(self.models[name][1]["sequence_length"] for name in group)
        if isinstance(key, tuple):  # a baseline: its own word index, int ids into its Embedding
            (name,) = group
            ids = [tokenizer.to_ids(doc, self.models[name][2]) for doc in tokens]
            # A baseline's id can be a row of zeros, which is not a known word.
            known = [int(self._with_vector[name][np.asarray(row, dtype=np.intp)].sum()) for row in ids]
            return tokenizer.pad(ids, longest), {name: known}
        word_index = found if key is None else {word: found.get(word, 0) for word in dict.fromkeys(words) if word in key}
        ids = [tokenizer.to_ids(doc, word_index) for doc in tokens]
        known = [int(np.count_nonzero(row)) for row in ids]  # an external model's ids are store rows + 1
        # The one mapping these models share (numpy: the runtime makes it what it needs, once).
        return self.store.gather(tokenizer.pad(ids, longest)), dict.fromkeys(group, known)

    def _externalized_inputs(self, group, texts, sequences):
        """Externalized models of one tokenizer and one mapping: each text is tokenized once (shared
        with other groups of the same tokenizer through ``sequences``), and mapped to vectors once,
        for every layout at once; each model's input is then its layout's head or tail.

        Models padded and truncated on the same side share one layout at their longest length and
        take its head ("post") or tail ("pre"); a model with mixed sides has a layout of its own.
        """
        first = self.models[group[0]][2]
        seqs = sequences.get(first.tokenizer.sequence_key)
        if seqs is None:  # each text split once for every tokenizer that splits alike, then ids per vocabulary
            numbered = sequences.get(first.tokenizer.token_key)
            if numbered is None:
                numbered = sequences[first.tokenizer.token_key] = first.tokenizer.numbered(texts)
            seqs = sequences[first.tokenizer.sequence_key] = first.tokenizer.sequences(texts, numbered)
        layouts = {}
        for name in group:
            tok = self.models[name][2].tokenizer
            layouts[_layout(tok)] = max(layouts.get(_layout(tok), 0), tok.length)
        padded = {layout: tokenizer.pad(seqs, length, *layout[:2]) for layout, length in layouts.items()}
        for ids in padded.values():
            check_budget(self.store, ids.shape)
        flat = np.concatenate([ids.ravel() for ids in padded.values()])
        check_budget(self.store, flat.shape)  # all layouts at once, when there are several
        vectors = first.vectors(self.store, flat)  # the group's one mapping, for every layout at once
        laid_out, start = {}, 0  # each layout's ids, vectors and which ids stand for a vector
        for layout, ids in padded.items():
            part = slice(start, start + ids.size)
            laid_out[layout] = (ids, vectors[part].reshape(ids.shape + (-1,)), first.with_vector[ids])
            start += ids.size
        inputs, known = {}, {}
        for name in group:
            external = self.models[name][2]
            tok = external.tokenizer
            ids, vectors, with_vector = laid_out[_layout(tok)]
            if ids.shape[1] != tok.length:  # the head or the tail of a longer layout is exactly this one
                cut = slice(None, tok.length) if tok.padding == "post" else slice(-tok.length, None)
                ids, vectors, with_vector = ids[:, cut], vectors[:, cut], with_vector[:, cut]
            inputs[name] = {"vectors": vectors, "mask": ids != 0} if external.mask else vectors
            counted = with_vector & (ids != 0) & (ids != (-1 if tok.oov_id is None else tok.oov_id))
            known[name] = counted.sum(axis=1).tolist()
        return inputs, known

    def _run_group(self, key, group, inputs):
        """``{name: probabilities}`` of the models ``group`` names of group ``key``, on the group's
        shared input, by their runtime: one call for the whole group where the runtime can.

        A model shorter than the group's longest takes the tail of the input: with pre-padding
        and pre-truncation, that is exactly its own input. An externalized group's input holds
        each model's own (``_externalized_inputs``); a runner's models take the same one.
        """
        wanted, out = set(group), {}
        for runner, names in self._runners[key]:
            mine = [name for name in names if name in wanted]
            if mine and isinstance(inputs, dict):
                out.update(runner.run(mine, inputs[mine[0]]))  # their vectors, or {"vectors", "mask"}
            elif mine:
                out.update(runner.run(mine, inputs))
        return out
