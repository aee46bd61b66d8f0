"""The one harness of every benchmark: paths, data, timing, memory (PSS), models, a real server and its load, table rows.

Everything the benchmarks make (the GloVe text file, stores, models, corpora, runs) goes into
bench/results/, which git ignores, and is made once and reused where that is safe.
"""

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# BENCH_RESULTS_DIR moves everything elsewhere (the tests run the --quick forms in a temporary folder).
RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or ROOT / "bench" / "results")
CACHE = RESULTS / "cache"  # the scripts' CACHE_DIR too, so the packaged GloVe store is made once
TRAIN_TAR = (ROOT / ".." / "shared" / "data" / "20news-bydate-train.tar.gz").resolve()
MB = 1e6
# Subprocesses start quietly and alike: TensorFlow's start-up chatter (and its "no CUDA" error
# on this CPU-only machine) is noise here.
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(ROOT)}
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The benchmark's models are saved untrained, so Keras warns that their optimizer has no state.
warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
# The serving benchmarks' load: worker processes, models, concurrent clients.
WORKERS, K, CLIENTS = 2, 8, 8
# Fewer glibc malloc arenas: without this, which thread's arena holds TensorFlow's freed
# temporaries swings a worker's memory by tens of MB, hiding the MBs per model measured here.
# serve --ray keeps its local Ray on 127.0.0.1 (see docs/ray.md).
SERVE_ENV = {**ENV, "MALLOC_ARENA_MAX": "2", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def parse_args(description, argv=None):
    """Every benchmark takes --quick (smaller K, fewer documents, fewer repeats, 1 epoch) and --json."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help="a fast smoke run with smaller sizes")
    parser.add_argument("--json", help="also write the figures to this file (report.py reads them)")
    return parser.parse_args(argv)


def save_json(args, figures):
    """Write the figures where --json says; returns them."""
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, default=str) + "\n")
    return figures


def median(values):
    return statistics.median(values)


def alternate(sides, repeats):
    """Time each side ``repeats`` times, alternating sides (and their order) so drift hits both.

    ``sides`` maps a name to a function of no arguments; returns ``{name: [seconds, ...]}``.
    """
    names, times = list(sides), {name: [] for name in sides}
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            started = time.perf_counter()
            sides[name]()
            times[name].append(time.perf_counter() - started)
    return times


def run(args, **kwargs):
    """Run a command with the benchmark environment; raise with its output when it fails."""
    done = subprocess.run(args, env=ENV, cwd=ROOT, capture_output=True, text=True, **kwargs)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} failed ({done.returncode}):\n{done.stdout[-2000:]}"
                           f"\n{done.stderr[-4000:]}")
    return done


def fresh_dir(path):
    path = Path(path)
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def dir_bytes(path):
    """Bytes of all files under ``path`` (a file is its own size)."""
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def glove_store():
    """The packaged GloVe 6B 50d store (400,000 x 50), converted into CACHE once."""
    from external_embeddings import sources

    return sources.open_vectors("", CACHE, 2**31)


def glove_text_file():
    """The packaged GloVe written as a GloVe text file (``%.5f``, ~170 MB), once; returns its path."""
    path = CACHE / "glove.6B.50d.txt"
    if path.exists():
        return path
    from external_embeddings import sources

    words, matrix = sources.packaged_glove()
    path.parent.mkdir(parents=True, exist_ok=True)
    row = " ".join(["%.5f"] * matrix.shape[1])
    partial = path.with_suffix(".partial")
    with open(partial, "w", encoding="utf-8", newline="\n") as f:
        for word, vector in zip(words, matrix.tolist()):
            f.write(f"{word} {row % tuple(vector)}\n")
    partial.rename(path)  # a reader never sees half a file
    return path


def load_texts(count=None):
    """Documents of the real 20 Newsgroups train split (headers dropped), or None without it.

    Returns the corpus object of external_embeddings.text.corpus, cut to ``count`` documents spread
    over all categories when ``count`` is given.
    """
    if not TRAIN_TAR.is_file():
        return None
    from external_embeddings import sources

    settings = SimpleNamespace(TEXT_DATA_DIR=str(TRAIN_TAR), CACHE_DIR=str(CACHE), CORPUS_URL="", SEED=1337)
    corpus = sources.find_corpus(settings, None)
    if count is not None and count < len(corpus.texts):
        keep = np.sort(np.random.default_rng(0).choice(len(corpus.texts), count, replace=False))
        corpus.texts = [corpus.texts[i] for i in keep]
        corpus.labels = corpus.labels[keep]
    return corpus


def generated_texts(store, count, words_per_text=300, seed=0):
    """Texts of words drawn from the store's 20,000 most frequent words, when no corpus is there."""
    rng = np.random.default_rng(seed)
    vocab = [store.word(i) for i in range(20000)]
    return [" ".join(rng.choice(vocab, size=words_per_text)) for _ in range(count)]


def row(measure, original, external, ratio, goal, met, note=""):
    """One line of the report table: the two sides' figures, their ratio and the goal's verdict."""
    verdict = "n/a" if met is None else ("met" if met else "MISSED")
    return {"measure": measure, "original": original, "external": external, "ratio": ratio, "goal": goal,
            "verdict": verdict, "note": note}


def print_rows(title, rows):
    """Print the rows side by side, as the report table shows them."""
    print(f"\n{title}")
    for r in rows:
        print(f"  {r['measure']}: original {r['original']} | external {r['external']} | ratio {r['ratio']} "
              f"| goal {r['goal']}: {r['verdict']}" + (f" ({r['note']})" if r["note"] else ""))


MODELS = RESULTS / "models"
MAX_K = 8
LENGTH = 1000  # config.MAX_SEQUENCE_LENGTH
NUM_WORDS = 20000  # config.MAX_NUM_WORDS: the baseline Embedding's rows


def word_index_for(store):
    """The baseline's word index as the script builds it: the corpus's most frequent words."""
    from external_embeddings.text import tokenizer

    corpus = load_texts()
    texts = corpus.texts if corpus else generated_texts(store, 2000)
    return tokenizer.build_vocabulary([tokenizer.tokenize(t) for t in texts], NUM_WORDS)


def make_models(store, count=MAX_K):
    """``count`` baseline and ``count`` external run folders, laid out as the scripts save them.

    Untrained (weights do not change size, memory or speed), each with its own random weights.
    Returns ``{"baseline": [dirs], "external": [dirs]}``; made once per store and reused.
    """
    import json

    dirs = {kind: [MODELS / kind / f"m{i}" for i in range(count)] for kind in ("baseline", "external")}
    stamp = MODELS / "store.json"  # the store, and the manifest format (3: with "onnx")
    if stamp.exists() and json.loads(stamp.read_text()) == {**store.describe(), "format": 3} and all(
            (d / "model.keras").exists() for ds in dirs.values() for d in ds):
        return dirs

    import keras

    from external_embeddings.text import tokenizer
    from external_embeddings.models.model import conv_classifier
    from external_embeddings.models.results import save_run

    fresh_dir(MODELS)
    corpus = load_texts()
    labels = corpus.label_names if corpus else [f"topic{i}" for i in range(20)]
    word_index = word_index_for(store)
    found = store.lookup(word_index)
    matrix = store.gather([0] + [found.get(word, 0) for word in word_index])  # as the baseline script
    for i in range(count):
        for kind in ("baseline", "external"):
            keras.utils.set_random_seed(i)
            if kind == "baseline":
                inputs = keras.Input(shape=(LENGTH,), dtype="int32")
                layer = keras.layers.Embedding(len(matrix), store.dim, trainable=False)
                embedded = layer(inputs)
                layer.set_weights([matrix])
                files = {"word_index.json": word_index}
            else:
                inputs = embedded = keras.Input(shape=(LENGTH, store.dim), dtype="float32")
                files = {}
            model = conv_classifier(inputs, embedded, len(labels))
            manifest = {"kind": kind, "store": store.describe(), "labels": labels, "sequence_length": LENGTH,
                        "tokenizer": tokenizer.SETTINGS, "vocabulary": next(iter(files), "store")}
            save_run(dirs[kind][i], model, manifest, files, {})
    stamp.write_text(json.dumps({**store.describe(), "format": 3}))
    return dirs


# A real server and the load on it, for every serving benchmark.

def model_folder(kind, dirs, k):
    """A folder of the first ``k`` models of ``kind`` (hard links: no copies on disk)."""
    folder = RESULTS / "serve" / f"{kind}-{k}"
    if not (folder / f"m{k - 1}" / "model.onnx").exists():  # made before model.onnx: again
        fresh_dir(folder)
        for d in dirs[:k]:
            (folder / d.name).mkdir()
            for f in d.iterdir():
                os.link(f, folder / d.name / f.name)
    return folder


class Server:
    """A real ``serve`` process; ``ready_seconds`` is from start to its ready line."""

    def __init__(self, store_path, models, options=(), workers=WORKERS, env=None):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        started = time.perf_counter()
        self.proc = subprocess.Popen([sys.executable, "-m", "external_embeddings", "serve", "--store", str(store_path),
                                      "--models", str(models), "--port", str(port), "--workers", str(workers),
                                      "--poll-seconds", "0", *options], env=env or SERVE_ENV, cwd=ROOT,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.proc.stdout.readline()
        self.ready_seconds = time.perf_counter() - started
        if not line.startswith("Serving"):
            self.stop()
            raise RuntimeError(f"the server did not start (exit code {self.proc.returncode}): {line}")

    def pss(self):
        """Sum of PSS over the worker processes (a page shared by both counts once in all)."""
        return pss(p for p in psutil.Process(self.proc.pid).children() if "spawn_main" in " ".join(p.cmdline()))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(2)  # Ctrl-C: a clean shutdown
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                for p in psutil.Process(self.proc.pid).children(recursive=True):
                    p.kill()
                self.proc.kill()
                self.proc.wait()


async def load(url, bodies, texts_per_body, seconds, max_requests, clients=CLIENTS, path="/v1/predict"):
    """C clients, each sending the next body as soon as its last answer came, until the time or
    the request count is up. Returns throughput, latency percentiles and errors.

    A body is JSON bytes, or a (bytes, headers) pair for another form (bench_protocol.py's);
    ``path`` is where they go."""
    import httpx

    latencies, errors, sent = [], 0, 0
    deadline = time.perf_counter() + seconds

    async with httpx.AsyncClient(base_url=url, timeout=120, limits=httpx.Limits(max_connections=clients)) as client:
        async def client_loop(i):
            nonlocal errors, sent
            while time.perf_counter() < deadline and sent < max_requests:
                body, sent = bodies[sent % len(bodies)], sent + 1
                content, headers = body if isinstance(body, tuple) else (body, {"Content-Type": "application/json"})
                started = time.perf_counter()
                try:
                    answer = await client.post(path, content=content, headers=headers)
                    ok = answer.status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors += 1

        started = time.perf_counter()
        await asyncio.gather(*(client_loop(i) for i in range(clients)))
        elapsed = time.perf_counter() - started
    ms = np.array(latencies or [np.nan]) * 1000
    return {"requests": len(latencies) + errors, "errors": errors, "seconds": elapsed,
            "requests_per_second": len(latencies) / elapsed, "texts_per_second": len(latencies) * texts_per_body / elapsed,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99))}


def warm_up(url, singles, batches):
    """The same concurrent requests as the load, a few of each, so that both workers have run
    every model on merged batches of several sizes (Keras traces a new shape a few times)."""
    asyncio.run(load(url, singles, 1, 60, 6 * CLIENTS))
    asyncio.run(load(url, batches, 32, 60, 2 * CLIENTS))


def request_bodies(texts):
    """The load's request bodies: each text alone, and the texts in batches of 32."""
    singles = [json.dumps({"texts": [t]}).encode() for t in texts]
    batches = [json.dumps({"texts": texts[i:i + 32]}).encode() for i in range(0, len(texts) - 31, 32)]
    return singles, batches


def load_test(url, singles, batches, seconds, max_requests):
    """The warm-up, then the load test's two phases: one text per request, then 32."""
    warm_up(url, singles, batches)
    return {phase: asyncio.run(load(url, bodies, n, seconds, max_requests))
            for phase, bodies, n in (("single", singles, 1), ("batch32", batches, 32))}


def wait_ready(url, in_a_row=10, seconds=300):
    """Until /readyz answers 200 ``in_a_row`` times running. ``serve --ray`` prints its line once
    the replicas have started, before they have loaded the models; with both replicas picked at
    random by Ray Serve's router, 10 answers in a row come from both but 1 time in 512."""
    import httpx

    deadline, running = time.monotonic() + seconds, 0
    with httpx.Client(base_url=url, timeout=30) as client:
        while running < in_a_row:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} was not ready after {seconds} s")
            try:
                running = running + 1 if client.get("/readyz").status_code == 200 else 0
            except httpx.HTTPError:
                running = 0
            if not running:
                time.sleep(0.5)


def pss(processes):
    """Sum of PSS over processes (psutil.Process objects): a page shared by several counts once in all."""
    return sum(p.memory_full_info().pss for p in processes)
