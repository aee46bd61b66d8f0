"""Issue #18: K = 8 models as one computation, in one process: which way to run a group.

Times one batch through the 8 external CNNs (bench/common.py's models, inputs mapped from real
20 Newsgroups texts, or made-up ones without the corpus) at 1, 16 and 64 texts:

* Keras, each model alone (``predict_on_batch`` x 8, as serve ran before the runtimes);
* Keras, the 8 fused into one ``keras.Model`` with 8 outputs (the keras runtime);
* ONNX Runtime, one session per model, no arena, spinning off (the onnx runtime's default);
* the same sessions sharing one arena (``KEE_ONNX_ARENA=1``);
* ONNX Runtime, one graph of the 8 models (prefixed names, one shared input), built here with
  ``onnx``, with an arena; and sessions and graph asked for one model of the 8 (a request for
  a subset).

One intra-op thread everywhere, as each of 2 workers on 2 cores has. Sides alternate.

Run: nice python bench/bench_fuse.py [--quick] [--json FILE]
"""

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

K, THREADS = 8, 1


def fused_graph(paths, length):
    """One ONNX graph of the models at ``paths``: each under its own name prefix, on one input "x"."""
    import onnx
    from onnx import compose, helper

    nodes, initializers, outputs, first = [], [], [], None
    for i, path in enumerate(paths):
        model = compose.add_prefix(onnx.load(path), f"m{i}/")
        first = first or model
        nodes.append(helper.make_node("Identity", ["x"], [model.graph.input[0].name]))
        nodes += model.graph.node
        initializers += model.graph.initializer
        outputs += model.graph.output
    x = helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, ["batch", length, None])
    graph = helper.make_graph(nodes, "fused", [x], outputs, initializers)
    fused = helper.make_model(graph, opset_imports=first.opset_import)
    fused.ir_version = first.ir_version
    return fused.SerializeToString()


def main(argv=None):
    args = common.parse_args(__doc__.splitlines()[0], argv)
    repeats, batches = (3, [1, 16]) if args.quick else (5, [1, 16, 64])
    store = common.glove_store()
    dirs = common.make_models(store, K)["external"]

    import keras
    import onnxruntime as ort
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(THREADS)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    from external_embeddings.models.model import load_model
    from external_embeddings.runtime.keras_runtime import _fuse
    from external_embeddings.runtime.onnx_runtime import OnnxRuntime
    from external_embeddings.text import tokenizer

    models = [load_model(d) for d in dirs]
    fused = _fuse([(d.name, m, common.LENGTH) for d, m in zip(dirs, models)])
    runtime = OnnxRuntime(THREADS)
    from external_embeddings.models.model import read_manifest

    sessions = [runtime.load(d, read_manifest(d), d) for d in dirs]
    os.environ["KEE_ONNX_ARENA"] = "1"
    arena = OnnxRuntime(THREADS)
    shared = [arena.load(d, read_manifest(d), d) for d in dirs]
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = THREADS, 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    graph = ort.InferenceSession(fused_graph([d / "model.onnx" for d in dirs], common.LENGTH), options,
                                 providers=["CPUExecutionProvider"])
    first_output = [graph.get_outputs()[0].name]

    corpus = common.load_texts(max(batches))
    texts = corpus.texts if corpus else common.generated_texts(store, max(batches))
    tokens = [tokenizer.tokenize(t) for t in texts]
    figures = {"k": K, "threads": THREADS, "repeats": repeats, "ms": {}}
    for n in batches:
        x = store.batch(tokens[:n], common.LENGTH)
        sides = {"keras alone": lambda: [keras.ops.convert_to_numpy(m.predict_on_batch(x)) for m in models],
                 "keras fused": lambda: fused.predict_on_batch(x),
                 "onnx sessions": lambda: [s(x) for s in sessions],
                 "onnx sessions, shared arena": lambda: [s(x) for s in shared],
                 "onnx one graph": lambda: graph.run(None, {"x": x}),
                 "onnx sessions, 1 of 8 asked": lambda: sessions[0](x),
                 "onnx one graph, 1 of 8 asked": lambda: graph.run(first_output, {"x": x})}
        reference = sides["keras alone"]()
        for name in ("keras fused", "onnx sessions", "onnx sessions, shared arena", "onnx one graph"):
            got = sides[name]()
            assert max(float(np.abs(np.asarray(a) - b).max()) for a, b in zip(got, reference)) <= 1e-5, name
        for fn in sides.values():  # warm: Keras traces each new shape once
            fn()
        times = common.alternate(sides, repeats)
        figures["ms"][n] = {name: common.median(t) * 1000 for name, t in times.items()}
        print(f"batch {n}: " + ", ".join(f"{name} {ms:,.1f} ms" for name, ms in figures["ms"][n].items()), flush=True)
    figures["rows"] = rows(figures)
    common.print_rows(f"K={K} models in one process, {THREADS} thread (original = Keras alone)", figures["rows"])
    return common.save_json(args, figures)


def rows(f):
    out = []
    for n, ms in f["ms"].items():
        base = ms["keras alone"]
        for name in ("keras fused", "onnx sessions", "onnx sessions, shared arena", "onnx one graph"):
            out.append(common.row(f"batch {n}: {name} vs keras alone, ms", f"{base:,.1f}", f"{ms[name]:,.1f}",
                                  f"{base / ms[name]:,.2f}x faster", "(informative)", None))
        out.append(common.row(f"batch {n}: 1 of 8 models asked, onnx one graph vs a session (no arena), ms",
                              f"{ms['onnx sessions, 1 of 8 asked']:,.1f}", f"{ms['onnx one graph, 1 of 8 asked']:,.1f}",
                              f"{ms['onnx one graph, 1 of 8 asked'] / ms['onnx sessions, 1 of 8 asked']:,.1f}x slower",
                              "(informative)", None, "a graph computes every output whatever is asked"))
    return out


if __name__ == "__main__":
    main()
