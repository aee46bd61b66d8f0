"""The command line: ``python -m external_embeddings convert|predict|verify ...``."""

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path

from .errors import InputError, reported


@contextlib.contextmanager
def _native_logs_hidden():
    """Hide TensorFlow's C++ start-up log, which 2.21 prints whatever TF_CPP_MIN_LOG_LEVEL says.

    File descriptor 2 points at /dev/null while TensorFlow loads; Python errors raised inside
    still reach the user, since they are printed after the descriptor is restored.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _convert(args):
    from .sources import convert_file

    started = time.perf_counter()
    store, parsed = convert_file(args.source, args.store, dtype=args.dtype, lenient=args.lenient,
                                 progress=not args.quiet, format=args.format)
    print(f"Converted {store.count:,} words of dimension {store.dim} into {store.path} ({store.manifest['dtype']}) "
          f"in {time.perf_counter() - started:,.1f} s; {parsed.duplicates:,} duplicate words dropped, "
          f"{parsed.skipped_lines:,} lines skipped.")


def _verify(args):
    from .store import EmbeddingStore

    store = EmbeddingStore.open(args.store, verify=True)
    print(f"{store.path}: {store.count:,} words, dim {store.dim}, {store.manifest['dtype']}, "
          f"fingerprint {store.fingerprint[:16]} verified.")


def _read_texts(args):
    if args.file is None:
        if not args.texts:
            raise InputError("command line", "no texts to predict", "give TEXT arguments or --file FILE")
        return list(args.texts)
    path = Path(args.file)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(path, "does not exist", "give a file with one text per line") from None
    except UnicodeDecodeError as e:
        line = path.read_bytes().count(b"\n", 0, e.start) + 1
        raise InputError(path, "is not UTF-8", "re-save it as UTF-8", line) from None
    texts = [line.replace("\\n", "\n") for line in lines if line.strip()]
    if not texts:
        raise InputError(path, "holds no texts", "write one text per line")
    return texts


def _predict(args):
    from .store import EmbeddingStore

    texts = _read_texts(args)
    store = EmbeddingStore.open(args.store, verify=True)
    with _native_logs_hidden():
        from .predictor import Predictor

        predictor = Predictor(store, args.models)
    for text, result in zip(texts, predictor.predict(texts)):
        if args.json:
            print(json.dumps({"text": text, "models": {name: {"label": r["label"], "probability": r["probability"]}
                                                       for name, r in result.items()}}))
        else:
            shown = text.replace("\n", " ")
            print(shown[:60] + ("..." if len(shown) > 60 else ""))
            for name, r in result.items():
                print(f"  {name}: {r['label']} ({r['probability']:.3f})")


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m external_embeddings", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser("convert", help="turn a GloVe/word2vec/fastText/gensim vectors file into a store")
    convert.add_argument("source", help="the vectors file: text (.txt, .vec), word2vec binary (.bin), a gensim "
                         "KeyedVectors.save file, or a .gz of a text or binary one")
    convert.add_argument("store", help="the store directory to create")
    convert.add_argument("--dtype", choices=["float32", "float16"], default="float32")
    convert.add_argument("--format", choices=["auto", "text", "word2vec-binary", "gensim"], default="auto",
                         help="the source's format; auto tells them apart by their first bytes")
    convert.add_argument("--lenient", action="store_true", help="skip (and count) lines that are not UTF-8")
    convert.add_argument("--quiet", action="store_true", help="no progress bar")
    convert.set_defaults(run=_convert)
    verify = commands.add_parser("verify", help="check a store's files against its fingerprint")
    verify.add_argument("store")
    verify.set_defaults(run=_verify)
    predict = commands.add_parser("predict", help="run every external model under --models on texts")
    predict.add_argument("--store", required=True)
    predict.add_argument("--models", required=True, help="a folder; every model.keras below it is served")
    predict.add_argument("--json", action="store_true", help="one JSON object per text")
    predict.add_argument("--file", help="one text per line; a literal \\n in a line stands for a newline")
    predict.add_argument("texts", nargs="*", metavar="TEXT")
    predict.set_defaults(run=_predict)
    args = parser.parse_args(argv)
    with reported():
        args.run(args)


if __name__ == "__main__":
    sys.exit(main())
