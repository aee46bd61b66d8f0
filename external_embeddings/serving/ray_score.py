"""``score``: every model on every text of a file, on Ray Data, into one Parquet file.

A thin adapter over ``Predictor``. The driver reads and checks the input (so a bad file is one
error before any work, and bad rows are counted, not fatal), Ray Data hands batches to a pool
of actors that each open the store and the models once, in ``__init__``, and the driver writes
the answers in input order into one Parquet file beside the target, renamed into place only
when complete. The driver writes, not the workers, because on a cluster a worker's local path
is on another machine.
"""

import collections
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from ..errors import InputError
from ..text.text_files import file_lines
from ..text.tokenizer import check_texts
from .ray_cluster import connected, input_error, on_every_node, open_node_store, package_env

BLOCK_ROWS = 1024  # rows a block carries to an actor: big enough to batch, small enough to spread
BATCH_ROWS = 256  # rows an actor runs at once (the predictor's own batch size)
PARQUET = (".parquet", ".pq")
JSON_LINES = (".jsonl", ".ndjson")
JSON = (".json",)  # one array of objects, read whole (as any JSON document must be)


def problem(text):
    """Why a row cannot be scored (a short reason for the output's ``error`` column), or None."""
    if text is None:
        return "no text"
    if not isinstance(text, str):
        return f"not a string ({type(text).__name__})"
    try:
        check_texts([text])
    except InputError:
        return "not valid UTF-8"
    return None if text.strip() else "empty"


def _read_json_lines(path):
    """(texts, ids or None, where each row is) of a JSON Lines file: one object a line."""
    texts, ids, has_id = [], [], False
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            raw = raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw
            if not raw.strip():
                texts.append(None), ids.append(None)
                continue
            try:
                value = json.loads(raw)
            except UnicodeDecodeError:
                raise InputError(path, "is not UTF-8", "re-save it as UTF-8", number) from None
            except (ValueError, RecursionError) as e:
                raise InputError(path, f"is not JSON Lines ({e})", 'write one object such as {"text": "..."} a line',
                                 number) from None
            value = value if isinstance(value, dict) else {}
            has_id = has_id or "id" in value
            texts.append(value.get("text", None)), ids.append(value.get("id"))
    return texts, ids if has_id else None, lambda i: (path, i + 1)


def _read_json_array(path):
    """(texts, ids or None, where each row is) of a .json file: one array of objects with "text" and "id"."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        value = json.loads(data.removeprefix(b"\xef\xbb\xbf"))
    except UnicodeDecodeError:
        raise InputError(path, "is not UTF-8", "re-save it as UTF-8") from None
    except (ValueError, RecursionError) as e:
        raise InputError(path, f"is not JSON ({e})", 'write an array of objects such as [{"text": "..."}]') from None
    if not isinstance(value, list):
        raise InputError(path, f"holds a JSON {type(value).__name__}, not an array of objects",
                         'write [{"id": 1, "text": "..."}, ...], or one object a line in a .jsonl file')
    rows = [row if isinstance(row, dict) else {} for row in value]
    ids = [row.get("id") for row in rows]
    return [row.get("text") for row in rows], ids if any("id" in row for row in rows) else None, \
        lambda i: (f"{path}: item {i + 1:,}", None)


INT64 = (-2**63, 2**63 - 1)


def _id_column(ids, where):
    """Ids as one Arrow column, never two ids made one.

    Ids that are all strings, all whole numbers within int64, all booleans or all other numbers
    keep that type. Any other mix (1 and "1", 1 and 2.5, 1 and true), a whole number beyond
    64 bits, a list or an object makes every id its JSON text (a string's with its quotes), so
    ids that differ stay different. An id that is no valid Unicode (a lone surrogate such as
    "\\ud800") is an error naming its line (``where(i)``: the file and line of row ``i``).
    """
    kinds = {type(i) for i in ids if i is not None}
    for i, value in enumerate(ids):
        try:
            if isinstance(value, str):
                value.encode("utf-8")
            elif isinstance(value, (list, dict)):  # a string inside may hold one too
                json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as e:
            place, line = where(i)
            raise InputError(place, f"has an id that is not valid Unicode ({e.object[e.start:e.end]!r}, a lone "
                             "surrogate)", "give ids as strings of valid characters, or numbers", line) from None
    if len(kinds) == 1 and kinds <= {str, bool, float, int}:
        if kinds != {int} or all(INT64[0] <= i <= INT64[1] for i in ids if i is not None):
            return pa.array(ids, {str: pa.string(), bool: pa.bool_(), float: pa.float64(), int: pa.int64()}[kinds.pop()])
    return pa.array([None if i is None else json.dumps(i, ensure_ascii=False) for i in ids], pa.string())


def read_input(path):
    """The input as a table: ``row`` (line or row number from 1), ``id`` if the input has one,
    ``text`` (null where the row is bad) and ``error`` (why a row is bad, else null)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "does not exist" if not path.exists() else "is not a file",
                         "give a text file (one text per line), a .jsonl, .json or .parquet file")
    ids = None
    try:
        if path.suffix.lower() in PARQUET:
            try:
                table = pq.read_table(path)
            except (pa.ArrowException, OSError) as e:
                raise InputError(path, f"is not a readable Parquet file ({e})", "write it again") from None
            if "text" not in table.column_names:
                raise InputError(path, f"has no column 'text' (its columns: {', '.join(table.column_names)})",
                                 "name the column of texts 'text'")
            if not (pa.types.is_string(table["text"].type) or pa.types.is_large_string(table["text"].type)):
                raise InputError(path, f"has a 'text' column of {table['text'].type}, not of strings",
                                 "store the texts as strings")
            texts = table["text"].to_pylist()
            ids = table["id"] if "id" in table.column_names else None
        elif path.suffix.lower() in JSON_LINES + JSON:
            texts, found, where = (_read_json_lines if path.suffix.lower() in JSON_LINES else _read_json_array)(path)
            ids = None if found is None else _id_column(found, where)
        else:
            texts = [text for _, text in file_lines(path)]
    except OSError as e:
        raise InputError(path, f"cannot be read ({e.strerror or e})", "check that the file is readable") from None
    if not texts:
        raise InputError(path, "holds no rows", "give a file with at least one text")
    errors = [problem(text) for text in texts]
    columns = {"row": pa.array(range(1, len(texts) + 1), pa.int64())}
    if ids is not None:
        columns["id"] = ids
    columns["text"] = pa.array([t if e is None else None for t, e in zip(texts, errors)], pa.string())
    columns["error"] = pa.array(errors, pa.string())
    return pa.table(columns)


class Scorer:
    """A Ray Data actor: the store and every model opened once, then batch after batch.

    It refuses to start when its node's copy of the store is not the driver's.
    """

    def __init__(self, store_path, models_dir, fingerprint, probabilities, runtime=None, fuse=True):
        import ray

        store = open_node_store(store_path, fingerprint)
        # Its own CPUs, not every core of the node, which the runtime would otherwise take.
        cpus = int(ray.get_runtime_context().get_assigned_resources().get("CPU", 1)) or 1
        from ..predictor import Predictor

        self.predictor = Predictor(store, models_dir, runtime, threads=cpus, fuse=fuse)
        self.probabilities = probabilities
        fields = [("row", pa.int64()), ("error", pa.string())]
        for name, (_, manifest, _) in self.predictor.models.items():
            fields += [(f"{name}/label", pa.string()), (f"{name}/probability", pa.float64()),
                       (f"{name}/known_words", pa.int64())]
            if probabilities:
                fields.append((f"{name}/probabilities", pa.struct([(label, pa.float64())
                                                                   for label in manifest["labels"]])))
        self.schema = pa.schema(fields)

    def __call__(self, batch):
        texts, errors = batch["text"].to_pylist(), batch["error"].to_pylist()
        good = [i for i, error in enumerate(errors) if error is None]
        answers = [None] * len(texts)
        for i, result in zip(good, self.predictor.stream(texts[i] for i in good)):
            answers[i] = result
        columns = [batch["row"], batch["error"]]
        for name in self.predictor.models:
            mine = [None if a is None else a[name] for a in answers]
            columns += [[None if a is None else a[key] for a in mine] for key in ("label", "probability", "known_words")]
            if self.probabilities:
                columns.append([None if a is None else a["probabilities"] for a in mine])
        return pa.Table.from_arrays([pa.array(c, f.type) if isinstance(c, list) else c
                                     for c, f in zip(columns, self.schema)], schema=self.schema)


def score(store_path, models_dir, input_path, output_path, address=None, actors=None, probabilities=False,
          progress=True, runtime=None, fuse=True):
    """Score ``input_path`` into ``output_path``; return a summary dict (rows, scored, bad, models, seconds)."""
    from ..store.embedding_store import EmbeddingStore

    started = time.perf_counter()
    output = Path(output_path)
    if actors is not None and actors < 1:
        raise InputError("--actors", f"is {actors}", "give 1 or more")
    if output.exists():
        raise InputError(output, "already exists", "choose another --output, or delete it to score again")
    if not Path(models_dir).is_dir():
        raise InputError(models_dir, "is not a folder", "give the folder holding the trained models")
    fingerprint = EmbeddingStore.open(store_path, verify=True).fingerprint
    table = read_input(input_path)
    with connected(address, actors, package_env()) as ray:
        data = ray.data.DataContext.get_current()
        data.execution_options.preserve_order = True
        data.enable_progress_bars = False
        data.print_on_execution_start = False
        data.max_consecutive_actor_init_deaths = 0  # a node that refuses will refuse again: stop at once
        for name in ("ray", "ray.data"):  # its errors reach us as exceptions, and are reported as one line
            logging.getLogger(name).setLevel(logging.CRITICAL)
        size = actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
        blocks = [table.slice(start, BLOCK_ROWS).select(["row", "text", "error"])
                  for start in range(0, len(table), BLOCK_ROWS)]
        dataset = ray.data.from_arrow(blocks).map_batches(
            Scorer, fn_constructor_args=(on_every_node(store_path), on_every_node(models_dir), fingerprint,
                                         probabilities, runtime, fuse),
            batch_size=BATCH_ROWS, batch_format="pyarrow", num_cpus=1,
            compute=ray.data.ActorPoolStrategy(size=min(size, len(blocks))))  # no actor without a block
        output.parent.mkdir(parents=True, exist_ok=True)
        handle, partial = tempfile.mkstemp(prefix=f".{output.name}.partial-", dir=output.parent)
        os.close(handle)
        os.chmod(partial, 0o644)  # mkstemp makes it private; the answers are for everyone who may read the folder
        try:
            models = _write(dataset, table, partial, progress)
            os.link(partial, output)  # fails, and changes nothing, if the output appeared meanwhile
        except FileExistsError:
            raise InputError(output, "appeared while scoring", "choose another --output") from None
        except Exception as e:
            raise input_error(e) or e
        finally:
            os.unlink(partial)
    bad = collections.Counter(e for e in table["error"].to_pylist() if e is not None)
    return {"rows": len(table), "scored": len(table) - sum(bad.values()), "bad": dict(bad), "models": models,
            "seconds": time.perf_counter() - started, "output": output}


def _write(dataset, table, path, progress):
    """Write the actors' answers in input order beside the input's ids; return the model count."""
    from tqdm import tqdm

    writer, expected, models = None, 1, 0
    with tqdm(total=len(table), unit=" texts", disable=not progress, leave=False) as bar:
        for batch in dataset.iter_batches(batch_size=None, batch_format="pyarrow"):
            rows = batch["row"]
            if len(batch) and rows[0].as_py() != expected:  # preserve_order promises this; check it
                raise RuntimeError(f"Ray returned row {rows[0].as_py()} where row {expected} was due")
            if "id" in table.column_names:
                batch = batch.add_column(1, "id", table["id"].slice(expected - 1, len(batch)))
            if writer is None:
                writer = pq.ParquetWriter(path, batch.schema)
                models = sum(name.endswith("/label") for name in batch.column_names)
            elif batch.schema != writer.schema:
                raise InputError("--models", "hold other models on some nodes", "copy the same models to every node")
            writer.write_table(batch)
            expected += len(batch)
            bar.update(len(batch))
    if writer is not None:
        writer.close()
    if expected != len(table) + 1:
        raise RuntimeError(f"Ray returned {expected - 1} of {len(table)} rows")
    return models


def report(summary):
    """One line for the command line: what was scored, how fast, and the bad rows by reason."""
    seconds = summary["seconds"]
    line = (f"Scored {summary['scored']:,} of {summary['rows']:,} rows with {summary['models']} models into "
            f"{summary['output']} in {seconds:,.1f} s ({summary['rows'] / seconds:,.1f} rows/s)")
    if summary["bad"]:
        reasons = ", ".join(f"{n:,} {reason}" for reason, n in sorted(summary["bad"].items()))
        line += f"; {sum(summary['bad'].values()):,} bad rows ({reasons}) have no labels, see their 'error' column"
    return line + "."
