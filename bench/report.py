"""Run every benchmark of issues #3 and #8 (serving) and write bench/results/report.md and report.png.

Each benchmark runs as its own process (``python bench/bench_x.py --json FILE``), one after the
other: one benchmark's TensorFlow, models or mapped store must not sit in the memory that the
next one measures, and a child's getrusage peak starts from its parent's RSS on Linux.

Run: python bench/report.py [--quick]     (--quick: small sizes, a smoke test of a few minutes)
"""

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

BENCHMARKS = ["open", "memory", "predict", "train", "serve"]  # each is bench/bench_<name>.py, cheapest first
COLUMNS = [("measure", "Measure"), ("original", "Original / baseline"), ("external", "External"),
           ("ratio", "Ratio (ext / base)"), ("goal", "Goal"), ("verdict", "Verdict"), ("note", "Note")]


def markdown(results, quick, seconds):
    """The report: one table of every row, the machine, and how long it all took."""
    lines = [f"# Benchmarks of issue #3{' (--quick: small sizes, not the real figures)' if quick else ''}", "",
             f"{platform.node()}: {psutil.cpu_count()} CPUs, {psutil.virtual_memory().total / 2**30:,.0f} GiB RAM, "
             f"Python {platform.python_version()}; all benchmarks took {seconds / 60:,.1f} min. "
             "Ratios are external / baseline for sizes and times per unit, speed-ups for times; "
             "figures are medians of alternated runs.", "",
             "| " + " | ".join(title for _, title in COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for name, figures in results.items():
        for r in figures["rows"]:
            lines.append("| " + " | ".join(str(r[key]).replace("|", "/") for key, _ in COLUMNS) + " |")
    m = results["memory"]
    lines += ["", f"Sizes: store {m['store_bytes'] / common.MB:,.1f} MB (once), baseline .keras "
              f"{m['keras_bytes']['baseline'] / common.MB:,.2f} MB, external .keras "
              f"{m['keras_bytes']['external'] / common.MB:,.2f} MB, CNN weights {m['cnn_bytes'] / common.MB:,.2f} MB, "
              f"baseline embedding {m['embedding_bytes'] / common.MB:,.2f} MB.", "",
              "![disk and RAM against K](report.png)", ""]
    return "\n".join(lines)


def plot(memory, path, serve=None):
    """Disk and RAM against the number of models K, baseline vs external (and the server's
    summed worker PSS when bench_serve ran)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = memory["ks"]
    panels = [("Disk", ks, memory["disk"]),
              ("RAM, one process (USS growth)", ks,
               {s: memory["ram"]["one_process"][s]["uss"] for s in memory["disk"]}),
              ("RAM, K processes (sum of PSS growth)", ks,
               {s: memory["ram"]["k_processes"][s]["pss"] for s in memory["disk"]})]
    if serve and serve.get("pss"):
        panels.append((f"Server, {serve['workers']} workers (sum of PSS)", serve["ks"], serve["pss"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, (title, xs, totals) in zip(axes, panels):
        for side, values in totals.items():
            ax.plot(xs, [v / common.MB for v in values], marker="o", label=side)
        ax.set(title=title, xlabel="models K", ylabel="MB", xticks=xs)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    args = common.parse_args(__doc__.splitlines()[0], argv)
    flags = ["--quick"] if args.quick else []
    started = time.perf_counter()
    results = {}
    common.RESULTS.mkdir(parents=True, exist_ok=True)
    for name in BENCHMARKS:
        print(f"\n=== {name} ({time.perf_counter() - started:,.0f} s in)", flush=True)
        out = common.RESULTS / f"{name}.json"
        out.unlink(missing_ok=True)
        subprocess.run([sys.executable, str(Path(__file__).with_name(f"bench_{name}.py")), *flags, "--json", str(out)],
                       env=common.ENV, check=True)
        results[name] = json.loads(out.read_text())
    seconds = time.perf_counter() - started
    (common.RESULTS / "report.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    (common.RESULTS / "report.md").write_text(markdown(results, args.quick, seconds))
    plot(results["memory"], common.RESULTS / "report.png", results.get("serve"))
    print(f"\nWrote {common.RESULTS / 'report.md'} and report.png in {seconds / 60:,.1f} min.")
    return results


if __name__ == "__main__":
    main()
