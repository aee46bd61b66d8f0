"""Issue 9 at production scale: 300d vectors, a million words, against gensim and the original loop.

On synthetic vectors shaped like glove.840B.300d (made-up words, random values, GloVe text,
deterministic), side by side in one run, each side in its own fresh subprocess:

* convert: ``python -m external_embeddings convert`` (and the same limited to one thread)
  against the original script's parse loop and gensim's ``load_word2vec_format`` text loader;
  wall time and peak RSS (the largest of a side's processes, from ``wait4``).
  Goals: >= 3x the loop, >= 2x gensim.
* open + the first 1,000 lookups (word -> vector) in a fresh process: ``EmbeddingStore.open``
  (no verify: the verification cache is another part of issue 9) against gensim's
  ``KeyedVectors.load(mmap="r")``; the original loop's figure is its parse plus the lookups.
  The store's resident pages come from /proc/self/smaps. Goals: >= 100x gensim; resident
  pages after open <= 1% of the store.
* store dtypes: size on disk and the speed of gathering a (64, 1000) batch. STORE_DTYPES is
  where the int8 store joins.
* per-model disk and RAM: baseline models (a frozen Embedding of 20,000 / 100,000 / 400,000 x
  300) against external ones (the same CNN on (1000, 300) input), K = 1..16 models loaded in
  2 worker processes (bench_memory's workers; sum of PSS growth). Goals: a baseline model on
  disk >= 50x an external one at 100,000 words; the RAM totals cross at K <= 2.

Run: python bench/bench_scale.py [--quick | --full | --rows N]   (--quick: 20,000 rows, K <= 2, ~1.5 min)
Only the convert part, some of its sides: --only convert --sides "this project,original loop"
(gensim's text loader alone takes ~9 minutes at 1M rows).
Only the open + lookups rows: --only open [--repeats 9]
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_memory  # noqa: E402
import common  # noqa: E402

DIM = 300
ROWS, FULL_ROWS, QUICK_ROWS = 1_000_000, 2_196_017, 20_000
STORE_DTYPES = ("float32", "float16")  # the hook for the int8 store (its own part of issue 9)
VOCABULARIES = (20_000, 100_000, 400_000)  # the baseline's MAX_NUM_WORDS
LOOKUPS = 1000
WORK = common.RESULTS / "scale"

# Written into every fresh process: the Rss of the mappings of one file, from /proc/self/smaps.
MAPPED_RSS = '''
def mapped_rss(name):
    total, inside = 0, False
    for line in open("/proc/self/smaps"):
        if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
            inside = line.rstrip().endswith(name)
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1]) * 1024
    return total
'''
# The original script's loop, then the lookups; prints its own timing.
CLASSIC = '''
import json, sys, time
import numpy as np
started = time.perf_counter()
emb = {}
with open(sys.argv[1], encoding="utf-8") as f:
    for line in f:
        values = line.split()
        emb[values[0]] = np.asarray(values[1:], dtype="float32")
vectors = [emb.get(w) for w in sys.argv[2].split(",")]
print(json.dumps({"seconds": time.perf_counter() - started, "words": len(emb)}))
'''
GENSIM_TEXT = '''
import sys
from gensim.models import KeyedVectors
print(len(KeyedVectors.load_word2vec_format(sys.argv[1], binary=False, no_header=True)))
'''
ONE_THREAD = '''
import sys
from external_embeddings import cli
from external_embeddings.vectors import text_format as vectors_file
vectors_file._threads = lambda size: 1
cli.main(sys.argv[1:])
'''
OPEN_STORE = MAPPED_RSS + '''
import json, sys, time
from external_embeddings.store import EmbeddingStore
tokens = sys.argv[2].split(",")
started = time.perf_counter()
store = EmbeddingStore.open(sys.argv[1])
opened = time.perf_counter()
after_open = mapped_rss("vectors.npy")  # not timed: reading smaps takes milliseconds
looking_up = time.perf_counter()
vectors = store.gather(store.ids(tokens))
done = time.perf_counter()
print(json.dumps({"seconds": opened - started + done - looking_up, "open_seconds": opened - started,
                  "lookup_seconds": done - looking_up,
                  "rss_after_open": after_open,
                  "rss_after_lookups": mapped_rss("vectors.npy"), "found": int((vectors != 0).any(axis=1).sum())}))
'''
OPEN_GENSIM = MAPPED_RSS + '''
import json, sys, time
import numpy as np
from gensim.models import KeyedVectors
tokens = sys.argv[2].split(",")
started = time.perf_counter()
kv = KeyedVectors.load(sys.argv[1], mmap="r")
opened = time.perf_counter()
after_open = mapped_rss("vectors.npy")  # not timed: reading smaps takes milliseconds
looking_up = time.perf_counter()
rows = [kv.key_to_index.get(w) for w in tokens]
vectors = np.stack([kv.vectors[r] if r is not None else np.zeros(kv.vector_size, np.float32) for r in rows])
done = time.perf_counter()
print(json.dumps({"seconds": opened - started + done - looking_up, "open_seconds": opened - started,
                  "lookup_seconds": done - looking_up,
                  "rss_after_open": after_open,
                  "rss_after_lookups": mapped_rss("vectors.npy"), "found": int((vectors != 0).any(axis=1).sum())}))
'''


def synthetic_lines(start, rows, dim=DIM):
    """GloVe text rows ``start``..``start + rows``: word ``w<hex row>``, values ' 0.dddddd' / ' -0.ddddd'.

    Built from digits with numpy (a Python loop over 300 million values would take minutes);
    each chunk is seeded by its first row, so files of different sizes share their whole chunks.
    """
    rng = np.random.default_rng(start)
    field = rng.integers(0, 10, (rows, dim, 9), dtype=np.uint8) + ord("0")
    negative = rng.random((rows, dim)) < 0.5
    field[:, :, 0] = ord(" ")
    field[:, :, 1] = np.where(negative, ord("-"), ord("0"))
    field[:, :, 2] = np.where(negative, ord("0"), ord("."))
    field[:, :, 3] = np.where(negative, ord("."), field[:, :, 3])
    body = field.reshape(rows, dim * 9)
    return b"".join(f"w{start + i:x}".encode() + body[i].tobytes() + b"\n" for i in range(rows))


def synthetic_file(rows, dim=DIM, chunk=20_000):
    """bench/results/cache/synthetic-<rows>x<dim>.txt, written once (renamed into place when whole)."""
    path = common.CACHE / f"synthetic-{rows}x{dim}.txt"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".partial")
        with open(partial, "wb") as f:
            for start in range(0, rows, chunk):
                f.write(synthetic_lines(start, min(chunk, rows - start), dim))
        partial.rename(path)
    return path


def run_with_peak(command):
    """(wall seconds, peak RSS bytes, CPU seconds, stdout), from wait4: the peak is the max over the
    process and its children, the CPU time their sum (on a shared machine, the fairer figure)."""
    started = time.perf_counter()
    with open(os.devnull, "wb") as null:
        proc = subprocess.Popen(command, env=common.ENV, cwd=common.ROOT, stdout=subprocess.PIPE, stderr=null)
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    if proc.returncode:
        raise RuntimeError(f"{' '.join(map(str, command[:4]))} failed with exit code {proc.returncode}")
    return seconds, usage.ru_maxrss * 1024, usage.ru_utime + usage.ru_stime, out.decode()


def sample_tokens(words_file_rows, count=LOOKUPS):
    """``count`` words of the synthetic file (a tenth of them unknown), deterministic."""
    rng = np.random.default_rng(1)
    rows = rng.integers(0, words_file_rows, count)
    return [f"w{r:x}" if i % 10 else f"unknown{r}" for i, r in enumerate(rows)]


CONVERT_SIDES = ("this project", "this project (1 thread)", "original loop", "gensim text loader")


def convert_sides(text_file, tokens, repeats, names=CONVERT_SIDES):
    """Each side of ``names`` ``repeats`` times, alternating order; medians of seconds and peak RSS."""
    store_dir = WORK / "convert-store"
    python = sys.executable

    def ours(script=None):
        common.fresh_dir(store_dir.parent / "convert")
        target = store_dir.parent / "convert" / "store"
        head = [python, "-c", script] if script else [python, "-m", "external_embeddings"]
        return run_with_peak([*head, "convert", str(text_file), str(target), "--quiet"])

    sides = {"this project": ours, "this project (1 thread)": lambda: ours(ONE_THREAD),
             "original loop": lambda: run_with_peak([python, "-c", CLASSIC, str(text_file), ",".join(tokens)]),
             "gensim text loader": lambda: run_with_peak([python, "-c", GENSIM_TEXT, str(text_file)])}
    sides = {name: sides[name] for name in names}
    results = {name: [] for name in sides}
    names = list(sides)
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            print(f"  convert: {name} ...", flush=True)
            results[name].append(sides[name]())
    figures = {name: {"seconds": common.median([r[0] for r in runs]), "peak_rss": int(common.median([r[1] for r in runs])),
                      "cpu_seconds": common.median([r[2] for r in runs])} for name, runs in results.items()}
    if "original loop" in results:
        classic = [json.loads(r[3]) for r in results["original loop"]]
        figures["original loop"]["parse_and_lookups_seconds"] = common.median([c["seconds"] for c in classic])
    return figures


def gensim_file(store):
    """The same vectors saved by gensim (``KeyedVectors.save``), made once from the store."""
    from gensim.models import KeyedVectors

    path = WORK / f"gensim-{store.count}x{store.dim}" / "vectors.kv"
    if not path.exists():
        kv = KeyedVectors(store.dim)
        kv.add_vectors([store.word(i) for i in range(store.count)], np.asarray(store.vectors))
        common.fresh_dir(path.parent)
        kv.save(str(path), separately=["vectors"])  # as the default does above 10M values: mmap needs it
    return path


def open_sides(store_dir, kv_path, tokens, repeats):
    """Open + the lookups in fresh processes, alternated; medians."""
    sides = {"store": [sys.executable, "-c", OPEN_STORE, str(store_dir), ",".join(tokens)],
             "gensim mmap": [sys.executable, "-c", OPEN_GENSIM, str(kv_path), ",".join(tokens)]}
    runs = {name: [] for name in sides}
    for r in range(repeats):
        for name in (list(sides) if r % 2 == 0 else list(sides)[::-1]):
            runs[name].append(json.loads(common.run(sides[name]).stdout))
    return {name: {key: common.median([x[key] for x in results]) for key in results[0]}
            for name, results in runs.items()}


def dtype_rows(store, repeats):
    """Size and gather speed of the store in each of STORE_DTYPES (made from the float32 store)."""
    from external_embeddings.store import EmbeddingStore, write_store

    stores = {}
    for dtype in STORE_DTYPES:
        path = WORK / f"store-{store.count}-{dtype}"
        if dtype == store.manifest["dtype"]:
            path = store.path
        elif not (path / "store.json").exists():
            write_store([store.word(i) for i in range(store.count)], store.vectors, path, {"file": "synthetic"}, dtype)
        stores[dtype] = EmbeddingStore.open(path)
    ids = np.random.default_rng(2).integers(1, min(100_000, store.count) + 1, (64, common.LENGTH))
    for s in stores.values():
        s.gather(ids)  # warm the pages these ids touch, for every side alike
    times = common.alternate({d: (lambda s=s: s.gather(ids)) for d, s in stores.items()}, repeats * 5)
    return {d: {"bytes": common.dir_bytes(s.path), "gather_seconds": common.median(times[d])} for d, s in stores.items()}


def make_models(store_dir, vocabularies):
    """One baseline model per vocabulary and one external model, saved as the scripts save them."""
    import keras

    from external_embeddings.models.model import conv_classifier
    from external_embeddings.models.results import save_run
    from external_embeddings.store import EmbeddingStore

    store = EmbeddingStore.open(store_dir)
    out = {}
    for vocabulary in [*vocabularies, None]:
        name = f"baseline-{vocabulary}" if vocabulary else "external"
        keras.utils.set_random_seed(0)
        if vocabulary:
            inputs = keras.Input(shape=(common.LENGTH,), dtype="int32")
            layer = keras.layers.Embedding(vocabulary + 1, store.dim, trainable=False)
            embedded = layer(inputs)
            layer.set_weights([store.gather(np.arange(vocabulary + 1))])  # row 0: padding
        else:
            inputs = embedded = keras.Input(shape=(common.LENGTH, store.dim), dtype="float32")
        model = conv_classifier(inputs, embedded, 20)
        save_run(WORK / "models" / name, model, {"kind": "baseline" if vocabulary else "external",
                                                 "store": store.describe()}, {}, {})
        out[name] = str(WORK / "models" / name)
    return out


def memory_sides(store_dir, models, ks, vocabularies, ram_limit):
    """Sum of PSS growth of 2 worker processes holding K models between them, per side and K."""
    ram = {}
    for name, model_dir in models.items():
        kind = "external" if name == "external" else "baseline"
        ram[name] = {}
        for k in ks:
            model_bytes = common.dir_bytes(Path(model_dir) / "model.keras")
            if kind == "baseline" and k * model_bytes > ram_limit:
                continue  # kept off a shared machine: the growth is linear in K, see the smaller K
            groups = [[model_dir] * (k - k // 2), [model_dir] * (k // 2)]
            print(f"  RAM: {name}, K={k} ...", flush=True)
            growth = bench_memory.measure(kind, store_dir, None, k, True, groups=groups,
                                          touch_rows=max(vocabularies[:2]))
            ram[name][k] = growth["pss"]
    return ram


def crossing(ks, external, baseline):
    """The smallest K at which the external total is at most the baseline's (None if never)."""
    return next((k for k in ks if k in external and k in baseline and external[k] <= baseline[k]), None)


def main(argv=None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 rows, K <= 2: a smoke run of ~1.5 minutes")
    parser.add_argument("--full", action="store_true", help=f"{FULL_ROWS:,} rows, as glove.840B.300d")
    parser.add_argument("--json", help="write the figures to this file (default: bench/results/scale[-convert|-open].json)")
    parser.add_argument("--rows", type=int, help=f"this many rows (default {ROWS:,})")
    parser.add_argument("--resume", action="store_true", help="reuse the convert figures of an earlier run")
    parser.add_argument("--only", choices=["convert", "open"],
                        help="run one part: convert (some --sides of it), or open = open + lookups against gensim "
                        "(the store and the gensim file are made once, without timing the convert)")
    parser.add_argument("--sides", default=",".join(CONVERT_SIDES),
                        help="the convert sides to run, comma-separated (default: all of %(default)s)")
    parser.add_argument("--repeats", type=int, help="runs per side (default 3; 1 with --quick)")
    args = parser.parse_args(argv)
    if args.json is None:  # a run of minutes is never lost: its figures are in a file whatever the flags
        args.json = str(common.RESULTS / f"scale{'-' + args.only if args.only else ''}{'-quick' if args.quick else ''}.json")
    names = [name.strip() for name in args.sides.split(",")]
    if not set(names) <= set(CONVERT_SIDES) or (args.only != "convert" and set(names) != set(CONVERT_SIDES)):
        parser.error(f"--sides takes some of {', '.join(CONVERT_SIDES)}, and only with --only convert")
    rows = args.rows or (QUICK_ROWS if args.quick else FULL_ROWS if args.full else ROWS)
    repeats = args.repeats or (1 if args.quick else 3)
    ks = [2] if args.quick else [1, 2, 4, 16]
    vocabularies = tuple(v for v in VOCABULARIES if v <= rows) if not args.quick else (10_000,)
    WORK.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()

    print(f"Writing {rows:,} x {DIM} synthetic GloVe text (once) ...", flush=True)
    text_file = synthetic_file(rows)
    tokens = sample_tokens(rows)
    if args.only == "open":
        return open_only(text_file, rows, tokens, repeats, args.json)
    print("Convert, side by side:", flush=True)
    saved = WORK / f"convert-{rows}.json"  # the slowest part: kept, so a later failure does not lose it
    if args.resume and saved.exists():
        convert = json.loads(saved.read_text())
    else:
        convert = convert_sides(text_file, tokens, 1 if not args.quick and rows >= ROWS else repeats, names)
        if not args.only:
            saved.write_text(json.dumps(convert, indent=1) + "\n")
    if args.only:
        figures = {"count": rows, "dim": DIM, "text_bytes": text_file.stat().st_size, "convert": convert,
                   "seconds": time.perf_counter() - started}
        figures["rows"] = convert_rows(figures)
        common.print_rows(f"Convert: {rows:,} x {DIM}", figures["rows"])
        return common.save_json(args, figures)

    from external_embeddings.store import EmbeddingStore

    store_dir = scale_store(text_file, rows)
    store = EmbeddingStore.open(store_dir)
    print("Open + lookups, side by side:", flush=True)
    opened = open_sides(store_dir, gensim_file(store), tokens, repeats)
    opened["original loop"] = {"seconds": convert["original loop"]["parse_and_lookups_seconds"]}
    dtypes = dtype_rows(store, repeats)
    store_bytes = common.dir_bytes(store_dir)
    vector_bytes = store.vectors.nbytes
    del store

    print("Models: disk and RAM ...", flush=True)
    models = json.loads(common.run([sys.executable, __file__, "--make-models", str(store_dir), *map(str, vocabularies)])
                        .stdout.strip().splitlines()[-1])
    disk = {name: common.dir_bytes(Path(d) / "model.keras") for name, d in models.items()}
    disk_totals = {name: [k * size + (store_bytes if name == "external" else 0) for k in ks] for name, size in disk.items()}
    ram = memory_sides(store_dir, models, ks, vocabularies, ram_limit=2.5e9 if not args.quick else 1e9)

    figures = {"count": rows, "dim": DIM, "text_bytes": text_file.stat().st_size, "store_bytes": store_bytes,
               "vector_bytes": vector_bytes, "convert": convert, "open": opened, "dtypes": dtypes,
               "model_bytes": disk, "disk_totals": disk_totals, "ks": ks, "ram_pss_growth": ram, "vocabularies": vocabularies,
               "seconds": time.perf_counter() - started}
    figures["rows"] = table(figures)
    common.print_rows(f"Scale: {rows:,} x {DIM} (medians of {repeats}; convert at 1M rows: one run per side)",
                      figures["rows"])
    plot(figures, common.RESULTS / "scale.png")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1, default=str) + "\n")
    return figures


def scale_store(text_file, rows):
    """WORK/store-<rows>: what the timed convert made, or converted here (once)."""
    from external_embeddings.sources import convert_file

    store_dir = WORK / f"store-{rows}"
    if not (store_dir / "store.json").exists():
        if (WORK / "convert" / "store" / "store.json").exists():  # what the timed convert just made
            (WORK / "convert" / "store").rename(store_dir)
        else:
            convert_file(text_file, store_dir, progress=False)
    return store_dir


def open_only(text_file, rows, tokens, repeats, json_path=None):
    """``--only open``: the open + lookups rows alone, against gensim, each side in fresh processes."""
    from external_embeddings.store import EmbeddingStore

    store_dir = scale_store(text_file, rows)
    store = EmbeddingStore.open(store_dir)
    figures = {"count": rows, "dim": DIM, "vector_bytes": store.vectors.nbytes,
               "open": open_sides(store_dir, gensim_file(store), tokens, repeats)}
    figures["rows"] = open_rows(figures)
    common.print_rows(f"Open + {LOOKUPS:,} lookups: {rows:,} x {DIM} (medians of {repeats} fresh processes a side)",
                      figures["rows"])
    if json_path:
        Path(json_path).write_text(json.dumps(figures, indent=1, default=str) + "\n")
    return figures


def plot(f, path):
    """Disk and RAM (2 processes, sum of PSS growth) against K: each baseline vocabulary vs external."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (disk, ram) = plt.subplots(1, 2, figsize=(10, 4))
    for name, totals in f["disk_totals"].items():
        disk.plot(f["ks"], [t / common.MB for t in totals], marker="o", label=name)
    for name, by_k in f["ram_pss_growth"].items():
        ks = sorted(int(k) for k in by_k)
        ram.plot(ks, [by_k[k if k in by_k else str(k)] / common.MB for k in ks], marker="o", label=name)
    for ax, title in ((disk, "Disk for K models (store once)"), (ram, "RAM, 2 processes (sum of PSS growth)")):
        ax.set(title=title, xlabel="models K", ylabel="MB", xscale="log", yscale="log", xticks=f["ks"])
        ax.set_xticklabels([str(k) for k in f["ks"]])
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{f['count']:,} x {f['dim']} vectors: baseline models (frozen Embedding) vs external models")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def open_rows(f):
    """The open + lookups rows: against gensim's mmap load (and the original loop when it ran)."""
    mb, o = (lambda b: f"{b / common.MB:,.1f} MB"), f["open"]
    store, gensim = o["store"], o["gensim mmap"]
    out = []
    for name, base in (("gensim KeyedVectors.load(mmap='r')", gensim), ("original loop (parse + lookups)",
                                                                      o.get("original loop"))):
        if base is None:
            continue
        ratio = base["seconds"] / store["seconds"]
        goal = 100 if "gensim" in name else None
        out.append(common.row(f"open + {LOOKUPS:,} lookups in a fresh process: {name} vs the store (s)",
                              f"{base['seconds']:,.3f}", f"{store['seconds']:,.4f}", f"{ratio:,.0f}x",
                              ">= 100x" if goal else "(informative)", ratio >= goal if goal else None))
    ratio = gensim["open_seconds"] / store["open_seconds"]
    out.append(common.row("open alone in a fresh process: gensim KeyedVectors.load(mmap='r') vs the store (s)",
                          f"{gensim['open_seconds']:,.3f}", f"{store['open_seconds']:,.4f}", f"{ratio:,.0f}x",
                          "(informative)", None))
    for when in ("open", "lookups"):
        share = store[f"rss_after_{when}"] / f["vector_bytes"]
        out.append(common.row(f"store vectors resident after {when} (share of {mb(f['vector_bytes'])})",
                              f"gensim: {mb(gensim[f'rss_after_{when}'])}", mb(store[f"rss_after_{when}"]),
                              f"{share:.2%}", "<= 1%" if when == "open" else "(informative)",
                              share <= 0.01 if when == "open" else None))
    return out


def convert_rows(f):
    """The convert rows of the report (those whose sides ran)."""
    mb, c = (lambda b: f"{b / common.MB:,.1f} MB"), f["convert"]
    ours = c.get("this project")
    out = []
    for name, goal in (("original loop", 3), ("gensim text loader", 2)):
        if ours is None or name not in c:
            continue
        ratio = c[name]["seconds"] / ours["seconds"]
        cpu = (lambda side: f"; CPU {side['cpu_seconds']:,.0f} s" if "cpu_seconds" in side else "")
        out.append(common.row(f"convert {f['count']:,} x {f['dim']} text: {name} vs this project (s; peak RSS)",
                              f"{c[name]['seconds']:,.1f} s; {mb(c[name]['peak_rss'])}{cpu(c[name])}",
                              f"{ours['seconds']:,.1f} s; {mb(ours['peak_rss'])}{cpu(ours)}", f"{ratio:,.2f}x",
                              f">= {goal}x", ratio >= goal))
    if ours is not None and "this project (1 thread)" in c:
        one = c["this project (1 thread)"]
        out.append(common.row("convert: this project on 1 thread vs one per core (s; CPU s)",
                              f"{one['seconds']:,.1f}; CPU {one['cpu_seconds']:,.0f}",
                              f"{ours['seconds']:,.1f}; CPU {ours['cpu_seconds']:,.0f}",
                              f"{one['seconds'] / ours['seconds']:,.2f}x", "(informative: scaling over the cores)",
                              None))
    return out


def table(f):
    """Report rows (common.row): each measure, both sides, the ratio and the goal's verdict."""
    mb = lambda b: f"{b / common.MB:,.1f} MB"  # noqa: E731
    out = convert_rows(f)
    out += open_rows(f)
    base32 = f["dtypes"]["float32"]
    for dtype, d in f["dtypes"].items():
        out.append(common.row(f"{dtype} store: size; gather of (64, 1000) ids (ms)", f"{mb(base32['bytes'])}; "
                              f"{base32['gather_seconds'] * 1e3:,.1f}", f"{mb(d['bytes'])}; "
                              f"{d['gather_seconds'] * 1e3:,.1f}", f"{d['bytes'] / base32['bytes']:,.2f}x size",
                              "(informative; vs float32)", None))
    ext_disk = f["model_bytes"]["external"]
    ram, ks = f["ram_pss_growth"], f["ks"]
    for name, size in f["model_bytes"].items():
        if name == "external":
            continue
        vocabulary = int(name.split("-")[1])
        ratio = size / ext_disk
        goal = vocabulary == 100_000
        out.append(common.row(f"disk per model, baseline with {vocabulary:,} words vs external",
                              mb(size), mb(ext_disk), f"{ratio:,.0f}x ({np.log10(ratio):.1f} orders)",
                              ">= 50x at 100,000 words" if goal else "(informative)", ratio >= 50 if goal else None))
        k_max = max(k for k in ram[name]) if ram[name] else None
        if k_max is None:
            continue
        base_k, ext_k = ram[name][k_max], ram["external"].get(k_max)
        cross = crossing(ks, ram["external"], ram[name])
        out.append(common.row(f"RAM, 2 processes, sum of PSS growth, K={k_max}, baseline {vocabulary:,} words",
                              mb(base_k), mb(ext_k) if ext_k is not None else "-",
                              f"{base_k / ext_k:,.1f}x" if ext_k else "-",
                              "cross at K <= 2" if goal else "(informative)",
                              (cross is not None and cross <= 2) if goal else None,
                              f"totals cross at K = {cross}" if cross else "no crossing in the K measured"))
    return out


if __name__ == "__main__":
    if sys.argv[1:2] == ["--make-models"]:
        print(json.dumps(make_models(sys.argv[2], [int(v) for v in sys.argv[3:]])))
    else:
        main()
