"""Goal 1: opening a store vs parsing the vectors text file, and conversion vs that parse.

* Open: ``EmbeddingStore.open`` plus the first ``ids()`` of 1,000 tokens, against the original
  script's loop that parses the text file into a dict; both in this process, same vectors.
  Goal: >= 200x faster.
* Convert: ``python -m external_embeddings convert FILE STORE --quiet`` against the same loop in
  a subprocess, so both pay the same Python start. Goal: no slower (ratio >= 1.0x).

Run: python bench/bench_open.py [--quick]
"""

import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

# The original example's parse, verbatim in spirit: one Python loop over the lines.
CLASSIC_PARSE = """
import sys
import numpy as np
emb = {}
with open(sys.argv[1], encoding="utf-8") as f:
    for line in f:
        values = line.split()
        emb[values[0]] = np.asarray(values[1:], dtype="float32")
print(len(emb))
"""


def classic_parse(path):
    """The original script's dict of word -> vector, built line by line."""
    emb = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            values = line.split()
            emb[values[0]] = np.asarray(values[1:], dtype="float32")
    return emb


def open_vs_parse(vectors_file, store_dir, tokens, repeats=3):
    """Median seconds of open + first ids(tokens) vs the classic parse, alternated; and the ratio."""
    from external_embeddings.store import EmbeddingStore

    found = {}

    def open_and_map():
        found["open"] = int(np.count_nonzero(EmbeddingStore.open(store_dir).ids(tokens)))

    def parse():
        emb = classic_parse(vectors_file)
        found["parse"] = sum(token in emb for token in tokens)

    times = common.alternate({"parse": parse, "open": open_and_map}, repeats)
    parse_s, opened = common.median(times["parse"]), common.median(times["open"])
    if found["open"] != found["parse"]:  # both sides must do the same work for the ratio to mean anything
        raise AssertionError(f"the store found {found['open']} of the tokens, the parse {found['parse']}")
    return {"parse_seconds": parse_s, "open_seconds": opened, "open_speedup": parse_s / opened, "tokens": len(tokens),
            "tokens_found": found["open"]}


def convert_vs_parse(vectors_file, work_dir, repeats=3):
    """Median seconds of the convert command vs the classic parse, each a fresh subprocess."""
    work_dir = common.fresh_dir(work_dir)
    store_dir = work_dir / "store"

    def convert():
        shutil.rmtree(store_dir, ignore_errors=True)  # convert refuses an existing store
        common.run([sys.executable, "-m", "external_embeddings", "convert", str(vectors_file), str(store_dir),
                    "--quiet"])

    def parse():
        common.run([sys.executable, "-c", CLASSIC_PARSE, str(vectors_file)])

    times = common.alternate({"parse": parse, "convert": convert}, repeats)
    parse_s, convert_s = common.median(times["parse"]), common.median(times["convert"])
    return {"subprocess_parse_seconds": parse_s, "convert_seconds": convert_s, "convert_speedup": parse_s / convert_s}


def sample_tokens(store, count=1000):
    """1,000 tokens of real text when the corpus is there (unknown words included), else store words."""
    from external_embeddings.text import tokenizer

    corpus = common.load_texts(50)
    tokens = [t for text in corpus.texts for t in tokenizer.tokenize(text)] if corpus else []
    if len(tokens) < count:
        tokens = [store.word(i) for i in np.random.default_rng(0).integers(0, store.count, count)]
    return tokens[:count]


def main(argv=None):
    args = common.parse_args(__doc__.splitlines()[0], argv)
    from external_embeddings.sources import convert_file
    from external_embeddings.store import EmbeddingStore

    repeats = 1 if args.quick else 3
    text_file = common.glove_text_file()
    store_dir = common.CACHE / "stores" / "glove.6B.50d-text"
    if not (store_dir / "store.json").exists():  # the store of the very same text file
        convert_file(text_file, store_dir, progress=False)
    tokens = sample_tokens(EmbeddingStore.open(store_dir))
    figures = {"vectors_file_bytes": text_file.stat().st_size, "store_bytes": common.dir_bytes(store_dir),
               **open_vs_parse(text_file, store_dir, tokens, repeats),
               **convert_vs_parse(text_file, common.RESULTS / "convert", repeats)}
    f = figures
    figures["rows"] = [
        common.row(f"open + first ids() of {f['tokens']:,} tokens vs parse into a dict (s)",
                   f"{f['parse_seconds']:,.3f}", f"{f['open_seconds']:,.4f}", f"{f['open_speedup']:,.0f}x",
                   ">= 200x", f["open_speedup"] >= 200),
        common.row("convert command vs parse, both in a subprocess (s)",
                   f"{f['subprocess_parse_seconds']:,.2f}", f"{f['convert_seconds']:,.2f}",
                   f"{f['convert_speedup']:,.3f}x", ">= 1.0x", f["convert_speedup"] >= 1.0),
    ]
    common.print_rows(f"Open and convert (GloVe 6B 50d text, {f['vectors_file_bytes'] / common.MB:,.0f} MB; "
                      f"medians of {repeats})", figures["rows"])
    return common.save_json(args, figures)


if __name__ == "__main__":
    main()
