"""The command line: ``python -m external_embeddings convert|verify|predict|score|serve|externalize|export ...``."""

import argparse
import itertools
import json
import math
import os
import signal
import sys
import time
from pathlib import Path

from .errors import InputError, reported
from .models.model import native_logs_hidden
from .settings import FORMATS
from .text.text_files import file_lines
from .text.tokenizer import check_texts


class _Parser(argparse.ArgumentParser):
    """argparse, with a bad option as one ``error:`` line (as every InputError is), not the usage first,
    and no abbreviated options: ``--stor`` silently meaning ``--store`` hides typos in scripts."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def finite_float(text):
    """An argparse type for every float option: nan and inf are refused, as no option means them.

    ``--batch-wait-ms nan`` would pass every ``< 0`` check (nan compares false) and then hang each
    request; ``inf`` would make a lone request wait for a full batch.
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number; give a number such as 0.5")
    return value


def tcp_port(text):
    """An argparse type for --port: 1 to 65535 (the OS would wrap a larger one onto another port)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port; give one from 1 to 65535")
    return value


def _convert(args):
    from .sources import convert_file
    from .store.embedding_store import EmbeddingStore, convert_store

    started = time.perf_counter()
    if Path(args.source, "store.json").is_file():  # an existing store, e.g. float32 -> int8
        convert_store(args.source, args.store, args.dtype)
        store = EmbeddingStore.open(args.store)
        print(f"Converted store {args.source} into {store.path} ({store.manifest['dtype']}): {store.count:,} words "
              f"of dimension {store.dim} in {time.perf_counter() - started:,.1f} s.")
        return
    store, parsed = convert_file(args.source, args.store, dtype=args.dtype, lenient=args.lenient,
                                 progress=not args.quiet, format=args.format)
    print(f"Converted {store.count:,} words of dimension {store.dim} into {store.path} ({store.manifest['dtype']}) "
          f"in {time.perf_counter() - started:,.1f} s; {parsed.duplicates:,} duplicate words dropped, "
          f"{parsed.skipped_lines:,} lines skipped.")


def _verify(args):
    from .store.embedding_store import EmbeddingStore

    store = EmbeddingStore.open(args.store, verify="full")  # every byte, whatever an earlier open checked
    print(f"{store.path}: {store.count:,} words, dim {store.dim}, {store.manifest['dtype']}, "
          f"fingerprint {store.fingerprint[:16]} verified.")


def _texts(args):
    """(line number or None, text) pairs: the command-line texts, or a --file's lines, read lazily.

    A file is read twice: once to check every line, so that a bad line is one error before any
    output, and once while predicting, so that memory stays flat for any size of file.
    """
    if args.file is None:
        if not args.texts:
            raise InputError("command line", "no texts to predict", "give TEXT arguments or --file FILE")
        check_texts(args.texts, where="command line: text")
        return ((None, text) for text in args.texts)
    path = Path(args.file)
    if not path.exists():
        raise InputError(path, "does not exist", "give a file with one text per line")
    if not path.is_file():
        raise InputError(path, "is not a file", "give a file with one text per line")
    try:
        if not sum(1 for _ in file_lines(path)):  # reads every line, to check each one
            raise InputError(path, "holds no texts", "write one text per line")
    except OSError as e:
        raise InputError(path, f"cannot be read ({e.strerror or e})", "check that the file is readable") from None
    return file_lines(path)


def _predict(args):
    from .store.embedding_store import EmbeddingStore

    texts = _texts(args)
    store = EmbeddingStore.open(args.store, verify=True)
    from .predictor import Predictor

    predictor = Predictor(store, args.models, args.runtime, args.threads, not args.no_fuse)
    lines, texts = itertools.tee(texts)
    for (line, text), result in zip(lines, predictor.stream(text for _, text in texts)):
        if args.json:
            answer = {"text": text, "models": {name: {key: r[key] for key in ("label", "probability", "known_words")}
                                               for name, r in result.items()}}
            print(json.dumps(answer if line is None else {"line": line, **answer}))
        else:
            shown = text.replace("\n", " ")
            print((f"{line}: " if line is not None else "") + shown[:60] + ("..." if len(shown) > 60 else ""))
            for name, r in result.items():
                note = " (no known word: the answer for an empty text)" if not r["known_words"] else ""
                print(f"  {name}: {r['label']} ({r['probability']:.3f}), {r['known_words']:,} known words{note}")


def _externalize(args):
    with native_logs_hidden():
        from .models.externalize import externalize, report

        figures = externalize(args.model, args.store, args.output, tokenizer=args.tokenizer, maxlen=args.maxlen,
                              padding=args.padding, truncating=args.truncating, labels=args.labels,
                              keep_rows=args.keep_rows, check=args.check)
    print(report(figures))


def _ray_on_loopback(address):
    """A cluster on this machine only (ray start --head --node-ip-address=127.0.0.1): without this,
    Ray rewrites 127.0.0.1 to the machine's network address, where nothing listens."""
    if address and address.rsplit(":", 1)[0] in ("127.0.0.1", "localhost"):
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def _score(args):
    _ray_on_loopback(args.address)
    try:
        from .serving import ray_score
    except ImportError as e:
        raise InputError("score", f"needs Ray ({e})", 'pip install "ray[data,serve]" (see requirements.txt)') from None
    summary = ray_score.score(args.store, args.models, args.input, args.output, address=args.address,
                              actors=args.actors, probabilities=args.probabilities, progress=not args.quiet,
                              runtime=args.runtime, fuse=not args.no_fuse)
    print(ray_score.report(summary))


def _export(args):
    with native_logs_hidden():  # TensorFlow's C++ start-up chatter
        from .models.onnx_export import export_folder
        from .predictor import find_model_dirs

    dirs = find_model_dirs(args.models)
    for model_dir in dirs:
        with native_logs_hidden():
            entry = export_folder(model_dir)
        print(f"Exported {model_dir / entry['file']} ({(model_dir / entry['file']).stat().st_size / 1e6:,.2f} MB; "
              f"largest difference from Keras {entry['max_difference']:.1g}).", flush=True)
    print(f"{len(dirs)} model(s) exported; serve them with --runtime onnx.")


def _check_models(store, models_dir):
    """Every model's manifest and word list, checked without TensorFlow (the workers load the rest)."""
    from .models.model import MANIFEST_FILE, read_manifest
    from .predictor import check_manifest, find_model_dirs, read_vocabulary

    dirs = find_model_dirs(models_dir)
    for model_dir in dirs:
        manifest = read_manifest(model_dir)
        check_manifest(manifest, model_dir / MANIFEST_FILE, store)
        read_vocabulary(model_dir, manifest)
    return dirs


def _announce_when_ready(run_dir, workers, url, models):
    """Print one line once every worker has loaded its models (each leaves a file in run_dir)."""
    while len(list(Path(run_dir).glob("ready-*"))) < workers:
        time.sleep(0.1)
    print(f"Serving {models} models at {url} with {workers} worker(s); Ctrl-C stops.", flush=True)


def _check_grpc_port(args):
    """--grpc-port: refused with --ray, on the HTTP port, when taken, or without tritonclient's gRPC part."""
    import socket

    from .serving.oip_grpc import protos

    if args.ray or args.grpc_port == args.port or not 0 < args.grpc_port < 65536:
        raise InputError("command line", f"--grpc-port {args.grpc_port} is not usable here",
                         "give a free port other than --port, without --ray")
    if protos() is None:
        raise InputError("command line", "--grpc-port needs grpcio and tritonclient's gRPC messages",
                         'pip install "tritonclient[grpc]"')
    with socket.socket() as s:
        try:
            s.bind((args.host, args.grpc_port))
        except OSError as e:
            raise InputError("command line", f"--grpc-port {args.grpc_port} cannot be bound ({e.strerror})",
                             "give a free port") from None


def _check_port(host, port):
    """Refuse a --port another server holds, in one line before the workers start (uvicorn would
    log its own error and exit 3 once the store and models were checked)."""
    import socket

    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds: a closing socket is no holder
        try:
            s.bind((host, port))
        except OSError as e:
            raise InputError("command line", f"--port {port} on {host} cannot be bound ({e.strerror})",
                             "stop the server that holds it, or give another --port") from None


def _serve(args):
    import tempfile
    import threading

    from .runtime import check_installed, default_threads
    from .store.embedding_store import EmbeddingStore

    for name in ("workers", "replicas", "max_texts", "max_bytes", "batch_texts", "limit_concurrency",
                 "max_connections"):
        if getattr(args, name) < (0 if name == "batch_texts" else 1):
            raise InputError("command line", f"--{name.replace('_', '-')} {getattr(args, name)} is too small",
                             "give a positive number")
    if args.batch_wait_ms < 0 or args.poll_seconds < 0:
        raise InputError("command line", "--batch-wait-ms and --poll-seconds must be >= 0", "give 0 or more")
    if args.grpc_port:
        _check_grpc_port(args)
    for name in ("start_timeout", "header_timeout", "body_timeout", "timeout_keep_alive"):
        if getattr(args, name) <= 0:
            raise InputError("command line", f"--{name.replace('_', '-')} {getattr(args, name):g} is too small",
                             "give a positive number of seconds")
    if args.threads is not None and args.threads < 0:
        raise InputError("command line", f"--threads {args.threads} is too small", "give 1 or more, or 0 for the "
                         "library's own default")
    check_installed(args.runtime)  # before the workers start: one line, not a traceback in each
    if not args.ray:
        _check_port(args.host, args.port)
    store = EmbeddingStore.open(args.store, verify=True)
    dirs = _check_models(store, args.models)
    store_path, fingerprint = store.path.resolve(), store.fingerprint
    del store  # unmapped: only the workers map the store, so their PSS counts it once
    settings = {f"KEE_SERVE_{key.upper()}": str(value) for key, value in vars(args).items() if key in (
        "max_texts", "max_bytes", "batch_texts", "batch_wait_ms", "poll_seconds", "grpc_port", "host",
        "limit_concurrency", "max_connections", "header_timeout", "body_timeout")}
    # Threads per worker: its share of the cores this process may use (a Ray replica has one CPU).
    threads = args.threads if args.threads is not None else 1 if args.ray else default_threads(args.workers)
    settings.update(KEE_SERVE_STORE=str(store_path), KEE_SERVE_MODELS=str(Path(args.models).resolve()),
                    KEE_SERVE_TOKEN=args.token or "", KEE_SERVE_RUNTIME=args.runtime, KEE_SERVE_THREADS=str(threads),
                    KEE_SERVE_FUSE="0" if args.no_fuse else "1")
    if args.ray:
        _ray_on_loopback(args.address)
        from .serving import ray_serve
        from .serving.ray_cluster import on_every_node

        # As each node should read them, as score does: a "~" path is each node's own home.
        settings.update(KEE_SERVE_STORE=on_every_node(args.store), KEE_SERVE_MODELS=on_every_node(args.models))

        return ray_serve.serve_until_stopped(settings, fingerprint, args.address, args.replicas, args.host,
                                             args.port, len(dirs), args.start_timeout, args.timeout_keep_alive)
    with tempfile.TemporaryDirectory(prefix="kee-serve-") as run_dir:
        os.environ.update(settings, KEE_SERVE_RUN_DIR=run_dir)
        if args.workers > 1 and not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            os.makedirs(Path(run_dir) / "metrics")  # so /metrics sums every worker, whichever answers
            os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(Path(run_dir) / "metrics")
        import uvicorn

        from .serving.connections import BoundedHTTPProtocol, raise_fd_limit

        raise_fd_limit()  # so that --max-connections sockets fit; each worker caps them to what does
        threading.Thread(target=_announce_when_ready, daemon=True,
                         args=(run_dir, args.workers, f"http://{args.host}:{args.port}"
                               + (f" (gRPC {args.host}:{args.grpc_port})" if args.grpc_port else ""), len(dirs))).start()
        # uvicorn re-raises the SIGTERM it handled once it has shut down; that is a clean stop too.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        try:
            uvicorn.run("external_embeddings.serving.app:create_app", factory=True, host=args.host, port=args.port,
                        workers=args.workers, log_level="warning", access_log=args.access_log,
                        timeout_graceful_shutdown=10, http=BoundedHTTPProtocol,
                        timeout_keep_alive=args.timeout_keep_alive)
        except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: the shutdown was clean
            pass


def _runtime_options(parser, threads=True):
    """--runtime, --threads and --no-fuse, alike for predict, serve and score."""
    from .runtime import DEFAULT, NAMES

    parser.add_argument("--runtime", choices=NAMES, default=DEFAULT, help="run the models on Keras (their "
                        "group fused into one model) or ONNX Runtime (no TensorFlow: a fifth of the memory, ready in "
                        f"seconds; a model without model.onnx runs on Keras, said in one line); default: {DEFAULT}; "
                        "see docs/runtime.md")
    if threads:
        parser.add_argument("--threads", type=int, help="threads per model call in each process (default: the cores "
                            "it may use, shared among the workers; 0: the library's own default)")
    parser.add_argument("--no-fuse", action="store_true", help="Keras: run each model alone, not a group as one "
                        "model (slower; for comparisons)")


def build_parser():
    """Every command and option; the docs' test reads it to check the command lines the docs quote."""
    parser = _Parser(prog="python -m external_embeddings", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    convert = commands.add_parser("convert", help="turn a GloVe/word2vec/fastText/gensim vectors file into a store")
    convert.add_argument("source", help="the vectors file: text (.txt, .vec), word2vec binary (.bin), a gensim "
                         "KeyedVectors.save file (only with --format gensim), or a .gz of a text or binary one; "
                         "or a store to re-write")
    convert.add_argument("store", help="the store directory to create")
    convert.add_argument("--dtype", choices=["float32", "float16", "int8"], default="float32")
    convert.add_argument("--format", choices=FORMATS, default="auto",
                         help="the source's format; auto tells text from word2vec binary by the first bytes. "
                         "gensim unpickles the file, which runs any code it holds: only for files you trust "
                         "(auto never reads a pickle)")
    convert.add_argument("--lenient", action="store_true", help="skip (and count) lines that are not UTF-8")
    convert.add_argument("--quiet", action="store_true", help="no progress bar")
    convert.set_defaults(run=_convert)
    verify = commands.add_parser("verify", help="check a store's files against its fingerprint")
    verify.add_argument("store")
    verify.set_defaults(run=_verify)
    predict = commands.add_parser("predict", help="run every model under --models on texts")
    predict.add_argument("--store", required=True)
    predict.add_argument("--models", required=True, help="a folder; every model.keras below it is served")
    predict.add_argument("--json", action="store_true", help="one JSON object per text")
    predict.add_argument("--file", help="one text per line (a blank line is an empty text); in a line, \\n "
                         "stands for a newline and \\\\ for a backslash")
    predict.add_argument("texts", nargs="*", metavar="TEXT")
    _runtime_options(predict)
    predict.set_defaults(run=_predict)
    score = commands.add_parser("score", help="run every model on every text of a file, on Ray Data, into Parquet")
    score.add_argument("--store", required=True, help="the store; every node needs a copy at this path")
    score.add_argument("--models", required=True, help="a folder; every node needs a copy at this path")
    score.add_argument("--input", required=True, help="one text per line (as predict --file), .jsonl with a "
                       "'text' field, .json holding an array of such objects, or .parquet with a 'text' column "
                       "(an 'id' field or column is kept)")
    score.add_argument("--output", required=True, help="the .parquet file to write; it must not exist")
    score.add_argument("--address", help="a running Ray cluster (ray start --head); without it Ray starts here")
    score.add_argument("--actors", type=int, help="actors, one CPU each (default: every CPU of the cluster)")
    score.add_argument("--probabilities", action="store_true", help="also write every label's probability")
    score.add_argument("--quiet", action="store_true", help="no progress bar")
    _runtime_options(score, threads=False)  # an actor's threads are its CPUs
    score.set_defaults(run=_score)
    serve = commands.add_parser("serve", help="serve every model under --models over HTTP (see docs/serving.md)")
    serve.add_argument("--store", required=True)
    serve.add_argument("--models", required=True, help="a folder; every model.keras below it is served")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=tcp_port, default=8000, help="1 to 65535")
    serve.add_argument("--workers", type=int, default=1, help="processes; each maps the store itself")
    serve.add_argument("--token", default=os.environ.get("KEE_SERVE_TOKEN"),
                       help="require Authorization: Bearer TOKEN (default: $KEE_SERVE_TOKEN)")
    serve.add_argument("--max-texts", type=int, default=1024, help="texts per request (413 beyond)")
    serve.add_argument("--max-bytes", type=int, default=4_000_000,
                       help="request body bytes (413 beyond, as soon as they arrive)")
    serve.add_argument("--batch-texts", type=int, default=64,
                       help="micro-batching: most texts run together across requests; 0 runs each request alone")
    serve.add_argument("--batch-wait-ms", type=finite_float, default=0.0, help="micro-batching: longest wait for more")
    serve.add_argument("--poll-seconds", type=finite_float, default=2.0, help="reload when --models changes; 0: never")
    limits = serve.add_argument_group("limits on what one client can hold (see docs/security.md)")
    limits.add_argument("--limit-concurrency", type=int, default=256,
                        help="requests under way per worker (per replica with --ray); beyond, a 503 at once")
    limits.add_argument("--max-connections", type=int, default=1000, help="open connections per worker (fewer "
                        "if ulimit -n is lower); beyond, the longest idle one is closed")
    limits.add_argument("--header-timeout", type=finite_float, default=10.0, help="seconds from opening a "
                        "connection (or the last response) to the end of the next request's headers; then closed")
    limits.add_argument("--body-timeout", type=finite_float, default=60.0,
                        help="seconds from a request's headers to the end of its body; then a 408")
    limits.add_argument("--timeout-keep-alive", type=finite_float, default=5.0,
                        help="seconds an idle kept-alive connection stays open")
    serve.add_argument("--access-log", action="store_true", help="log every request")
    serve.add_argument("--grpc-port", type=int, default=0,
                       help="also serve the Open Inference Protocol's gRPC form on this port; 0: off")
    serve.add_argument("--ray", action="store_true", help="serve on Ray Serve: replicas across a Ray cluster's nodes")
    serve.add_argument("--address", help="with --ray: a running Ray cluster (ray start --head); else Ray starts here")
    serve.add_argument("--replicas", type=int, default=1, help="with --ray: replicas, one CPU each")
    serve.add_argument("--start-timeout", type=finite_float, default=600, help="with --ray: seconds to wait for every "
                       "replica to load its models and answer before giving up")
    _runtime_options(serve)
    serve.set_defaults(run=_serve)
    externalize = commands.add_parser("externalize", help="turn a model with a frozen Embedding into an external "
                                      "model served from --store (see docs/existing-models.md)")
    externalize.add_argument("model", help="a Keras 3 .keras file or a Keras 2 (tf.keras) .h5 file")
    externalize.add_argument("--store", required=True, help="the store of the vectors the Embedding was filled from")
    externalize.add_argument("--output", required=True, help="the model folder to write; it must not exist")
    externalize.add_argument("--tokenizer", help="for a model that takes token ids: the Keras 2 Tokenizer.to_json() "
                             "file it was trained with")
    externalize.add_argument("--maxlen", type=int, help="with --tokenizer: pad_sequences' maxlen")
    externalize.add_argument("--padding", choices=["pre", "post"], help="with --tokenizer (default: pre)")
    externalize.add_argument("--truncating", choices=["pre", "post"], help="with --tokenizer (default: pre)")
    externalize.add_argument("--labels", help="the label names, one a line, in the order of the model's outputs "
                             "(default: 0..N-1)")
    externalize.add_argument("--keep-rows", action="store_true", help="keep the Embedding rows that differ from "
                             "the store beside the model (kept_rows.npz) instead of refusing")
    externalize.add_argument("--check", help="texts, one a line, to compare the two models on (default: a sample "
                             "made from the model's vocabulary)")
    externalize.set_defaults(run=_externalize)
    export = commands.add_parser("export", help="add model.onnx to every model folder under MODELS saved without it")
    export.add_argument("models", metavar="MODELS", help="a folder; every model.keras below it is exported")
    export.set_defaults(run=_export)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        with reported():
            args.run(args)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader stopped reading (``predict ... | head -1``): that is not an error. Python's
        # docs advise pointing stdout at /dev/null so the final flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


if __name__ == "__main__":
    sys.exit(main())
