"""Save a trained run (model, manifest, metrics.json) and print it beside the other script's run."""

import json
import os
import platform
import re
import resource
from pathlib import Path

from ..atomic import atomic_dir
from .model import MANIFEST_FILE, MODEL_FILE
from .onnx_export import export_quietly

SCRIPTS = ("pretrained_word_embeddings", "pretrained_external_word_embeddings")
METRICS_FILE = "metrics.json"


def peak_rss_bytes():
    """This process's peak resident memory.

    psutil has no peak on Linux. /proc's VmHWM is read first because getrusage's ru_maxrss
    survives exec, so a script started by a big process would report its parent's peak.
    """
    try:
        return int(re.search(r"VmHWM:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024
    except (OSError, AttributeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def accuracy_by_epoch(history):
    """The last epoch's validation accuracy, the best epoch's (1-based; the first of equals) and every epoch's.

    One figure hides how far validation accuracy swings from one epoch to the next (several points
    on the real split), so metrics.json keeps the whole curve beside the final figure.
    """
    values = [float(v) for v in history.history["val_accuracy"]]
    best = max(range(len(values)), key=values.__getitem__)
    return {"val_accuracy": values[-1], "best_val_accuracy": values[best], "best_epoch": best + 1,
            "val_accuracy_by_epoch": values}


def cpu_model():
    """The CPU's model name from /proc/cpuinfo (Linux), else what platform says."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_conditions(seed):
    """What a run's figures repeat exactly under: the seed, the CPU and its threads, the library versions.

    The same seed repeats a run's metrics exactly only on the same CPU, with the same number of
    threads and the same versions (docs/accuracy.md); recording them says whether two runs can agree.
    """
    import keras
    import numpy
    import tensorflow as tf

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"seed": seed, "cpu": cpu_model(), "cores": cores,
            # TensorFlow's own setting, else TF_NUM_INTRAOP_THREADS, else its default: one per usable core.
            "intra_op_threads": tf.config.threading.get_intra_op_parallelism_threads()
            or int(os.environ.get("TF_NUM_INTRAOP_THREADS") or 0) or cores,
            "versions": {"tensorflow": tf.__version__, "keras": keras.__version__, "numpy": numpy.__version__}}


def save_run(out_dir, model, manifest, files, metrics, sample_inputs=None):
    """Write the model, its ONNX export, manifest, extra JSON ``files`` and metrics.json into
    ``out_dir`` atomically.

    The run is built in a temporary folder beside ``out_dir`` and swapped in at the end, so an
    interrupted save leaves the previous run, not half of a new one. ``model.onnx`` is exported
    from the same weights and checked against the Keras model on ``sample_inputs`` (default: a
    few made-up ones); the manifest records it, or, if it could not be exported, a printed line
    says that the model will be served on Keras. Returns the metrics.
    """
    with atomic_dir(out_dir, replace=True) as tmp:
        model.save(tmp / MODEL_FILE)
        onnx_entry = export_quietly(model, tmp, out_dir, sample_inputs)
        if onnx_entry is not None:
            manifest = {**manifest, "onnx": onnx_entry}
        for name, content in {MANIFEST_FILE: manifest, **files}.items():
            (tmp / name).write_text(json.dumps(content, indent=1) + "\n")
        metrics["artifacts"] = {p.name: p.stat().st_size for p in sorted(tmp.iterdir())}
        (tmp / METRICS_FILE).write_text(json.dumps(metrics, indent=1) + "\n")
    return metrics


def _figure(value, show):
    """``show(value)`` for a number; "-" for a figure that is missing or not a number (an older run)."""
    return show(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else "-"


def _rows(metrics):
    mb = lambda n: f"{n / 1e6:,.2f} MB"  # noqa: E731
    accuracy = lambda v: f"{v:.4f}"  # noqa: E731
    rows = {
        "validation accuracy": _figure(metrics.get("val_accuracy"), accuracy),
        "  best epoch's": _figure(metrics.get("best_val_accuracy"), accuracy) +
        (f" (epoch {metrics['best_epoch']})" if isinstance(metrics.get("best_epoch"), int) else ""),
        "test accuracy": "n/a" if metrics.get("test_accuracy", 0) is None else
        _figure(metrics.get("test_accuracy"), accuracy),
        "training time": _figure(metrics.get("train_seconds"), lambda v: f"{v:,.1f} s"),
        "training samples/s": _figure(metrics.get("train_samples_per_second"), lambda v: f"{v:,.0f}"),
        "peak memory (RSS)": _figure(metrics.get("peak_rss_bytes"), mb),
    }
    artifacts = metrics.get("artifacts")
    if isinstance(artifacts, dict):
        rows["saved in all"] = _figure(sum(v for v in artifacts.values() if isinstance(v, (int, float))), mb)
        rows.update({f"  {name}": _figure(size, mb) for name, size in artifacts.items()})
    return rows


def _other_run(path):
    """The other script's metrics, or None (with a note) when its metrics.json cannot be read."""
    try:
        metrics = json.loads(path.read_text())
        if isinstance(metrics, dict):
            return metrics
        problem = "is not a JSON object"
    except (OSError, ValueError) as e:
        problem = f"cannot be read ({e})"
    print(f"Not shown beside this run: {path} {problem}.")
    return None


def report(out_dir, metrics):
    """Print this run's metrics; with the other script's metrics.json present, a side-by-side table.

    This run is saved before the report, and a damaged or older metrics.json of the other run
    is left out of the table with a note: it must never cost this run's results.
    """
    out_dir = Path(out_dir)
    runs = {out_dir.name: metrics}
    for script in SCRIPTS:
        other = out_dir.parent / script / METRICS_FILE
        if script != out_dir.name and other.is_file() and (other_metrics := _other_run(other)) is not None:
            runs[script] = other_metrics
    tables = {name: _rows(m) for name, m in runs.items()}
    keys = list(dict.fromkeys(k for rows in tables.values() for k in rows))
    names = [s for s in SCRIPTS if s in tables] or list(tables)
    width = max(map(len, keys))
    print(f"\nResults (also in {out_dir / METRICS_FILE}):")
    print(" " * width + "".join(f"  {n.removeprefix('pretrained_'):>28}" for n in names))
    for key in keys:
        print(key.ljust(width) + "".join(f"  {tables[n].get(key, '-'):>28}" for n in names))
    if len(runs) == 2 and (differ := _differences(*runs.values())):
        print(f"Not like for like: the runs differ in {differ}.")


# What must match for the two runs' figures to compare (older metrics.json files lack some: skipped).
LIKE_FOR_LIKE = ("epochs", "corpus", "vectors", "train_samples", "val_samples")


def _differences(a, b):
    """The LIKE_FOR_LIKE fields in which two runs' metrics differ, as text, or ""."""
    return "; ".join(f"{key} ({a[key]} vs {b[key]})" for key in LIKE_FOR_LIKE
                     if key in a and key in b and a[key] != b[key])
