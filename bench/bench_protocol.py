"""Issue #19: the Open Inference Protocol (binary and JSON forms) against /v1/predict, same server, same run.

One real ``serve`` (2 workers, micro-batching as default) with one external model of bench/common.py
(untrained, sequence length 1000, GloVe 6B 50d store). C concurrent httpx asyncio clients send real
20 Newsgroups train texts (generated ones without the archive), one text per request and then 32,
in three forms of the same request: /v1/predict's JSON, the protocol's JSON form, and its binary
tensor form with binary outputs (what tritonclient sends by default). Each phase runs for a fixed
time and at most a fixed number of requests; the three forms alternate, in a changing order, for
``ROUNDS`` rounds, and the median round is reported, so that drift on the shared machine hits all.
Before the load, one request per form checks that the three give the same probabilities.

Run: python bench/bench_protocol.py [--quick]
"""

import asyncio
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from external_embeddings.serving import oip_codec  # noqa: E402

ROUNDS = 5
MODEL = "m0"
SIDES = ("predict", "oip-binary", "oip-json")
PATHS = {"predict": "/v1/predict", "oip-binary": f"/v2/models/{MODEL}/infer", "oip-json": f"/v2/models/{MODEL}/infer"}


def body(side, texts):
    """One request for ``texts`` in a side's form: JSON bytes, or (bytes, headers) for the binary form."""
    if side == "predict":
        return json.dumps({"texts": texts, "models": [MODEL]}).encode()
    if side == "oip-json":
        return json.dumps({"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}).encode()
    raw = oip_codec.bytes_tensor(texts)
    header = json.dumps({"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES",
                                     "parameters": {"binary_data_size": len(raw)}}],
                         "parameters": {"binary_data_output": True}}).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


def probabilities(url, texts):
    """Each form's probabilities for ``texts`` (the labels' order), to check that they agree."""
    import httpx

    out = {}
    with httpx.Client(base_url=url, timeout=120) as client:
        answer = client.post("/v1/predict", content=body("predict", texts), headers={"Content-Type": "application/json"})
        out["predict"] = [r["models"][MODEL]["probability"] for r in answer.json()["results"]]
        reply = client.post(PATHS["oip-json"], content=body("oip-json", texts)).json()
        out["oip-json"] = np.max(np.reshape(reply["outputs"][0]["data"], reply["outputs"][0]["shape"]), axis=1)
        content, headers = body("oip-binary", texts)
        answer = client.post(PATHS["oip-binary"], content=content, headers=headers)
        length = int(answer.headers["Inference-Header-Content-Length"])
        size = json.loads(answer.content[:length])["outputs"][0]["parameters"]["binary_data_size"]
        p = np.frombuffer(answer.content[length:length + size], "<f4").reshape(len(texts), -1)
        out["oip-binary"] = np.max(p, axis=1)
    return out


def main(argv=None):
    args = common.parse_args(__doc__.splitlines()[0], argv)
    seconds, max_requests, rounds = (2, 100, 1) if args.quick else (8, 2000, ROUNDS)
    store = common.glove_store()
    corpus = common.load_texts(2000)
    texts = corpus.texts if corpus else common.generated_texts(store, 2000)
    dirs = common.make_models(store, 1)
    folder = common.model_folder("external", dirs["external"], 1)
    store_path = store.path
    del store
    singles = {side: [body(side, [t]) for t in texts] for side in SIDES}
    batches = {side: [body(side, texts[i:i + 32]) for i in range(0, len(texts) - 31, 32)] for side in SIDES}

    server = common.Server(store_path, folder)
    try:
        check = probabilities(server.url, texts[:8])
        agree = all(np.allclose(check[side], check["predict"], atol=1e-6) for side in SIDES)
        for side in SIDES:  # every form warmed up on batches of several sizes, as bench_serve does
            asyncio.run(common.load(server.url, singles[side], 1, 60, 6 * common.CLIENTS, path=PATHS[side]))
            asyncio.run(common.load(server.url, batches[side], 32, 60, 2 * common.CLIENTS, path=PATHS[side]))
        runs = {side: {"single": [], "batch32": []} for side in SIDES}
        for r in range(rounds):
            for side in (SIDES if r % 2 == 0 else SIDES[::-1]):
                for phase, bodies, n in (("single", singles[side], 1), ("batch32", batches[side], 32)):
                    run = asyncio.run(common.load(server.url, bodies, n, seconds, max_requests, path=PATHS[side]))
                    runs[side][phase].append(run)
                    print(f"round {r + 1}, {side}, {phase}: {json.dumps(run)}", flush=True)
    finally:
        server.stop()
    figures = {"workers": common.WORKERS, "clients": common.CLIENTS, "seconds": seconds,
               "max_requests": max_requests, "rounds": rounds, "texts": len(texts), "real_texts": corpus is not None,
               "agree": agree, "runs": runs}
    figures["rows"] = rows(figures)
    common.print_rows(f"Open Inference Protocol vs /v1/predict, 1 model, {common.WORKERS} workers, "
                      f"{common.CLIENTS} clients", figures["rows"])
    return common.save_json(args, figures)


def median_run(runs):
    """The round with the median throughput (its latencies with it)."""
    return sorted(runs, key=lambda run: run["texts_per_second"])[len(runs) // 2]


def rows(f):
    """Per phase: /v1/predict (the "original" column) against each protocol form."""
    out = []
    for phase, unit in (("single", "1 text"), ("batch32", "32 texts")):
        base = median_run(f["runs"]["predict"][phase])
        for side, goal in (("oip-binary", 0.9), ("oip-json", None)):
            run = median_run(f["runs"][side][phase])
            ratio = run["texts_per_second"] / base["texts_per_second"]
            out.append(common.row(f"protocol {side[4:]} vs /v1/predict, {unit}/request, texts/s (p50 / p99 ms)",
                                  f"{base['texts_per_second']:,.1f} ({base['p50_ms']:,.0f} / {base['p99_ms']:,.0f})",
                                  f"{run['texts_per_second']:,.1f} ({run['p50_ms']:,.0f} / {run['p99_ms']:,.0f})",
                                  f"{ratio:,.2f}x", ">= 0.90x" if goal else "(informative)",
                                  ratio >= goal if goal else None))
    errors = sum(run["errors"] for side in f["runs"].values() for phase in side.values() for run in phase)
    out.append(common.row("protocol, errors under load and answers that differ", errors, "same" if f["agree"] else
                          "DIFFER", "-", "0, same", errors == 0 and f["agree"]))
    return out


if __name__ == "__main__":
    main()
