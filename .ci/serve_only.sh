#!/usr/bin/env bash
# CI: the server from requirements-serve.txt alone (no TensorFlow, Keras or Ray) serves real requests.
# The main environment (requirements.txt) trains one tiny model and its store; a fresh venv made
# from requirements-serve.txt serves them with --runtime onnx; curl sends requests. Bounded in
# time, and the server is always stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(mktemp -d)
SERVER=
cleanup() {
    if [ -n "$SERVER" ] && kill -0 "$SERVER" 2>/dev/null; then
        kill -INT "$SERVER"; sleep 5; kill -KILL "$SERVER" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT

# 1. The main environment: a tiny vectors file, corpus and model (with model.onnx), and its store.
timeout 300 python - "$WORK" <<'PY'
import json, sys
from pathlib import Path
sys.path[:0] = [".", "tests"]
from conftest import write_corpus, write_vectors
import pretrained_external_word_embeddings as external

work = Path(sys.argv[1])
external.main([f"--VECTORS={write_vectors(work / 'tiny.txt')}", f"--TEXT_DATA_DIR={write_corpus(work / 'corpus')}",
               f"--CACHE_DIR={work / 'cache'}", f"--OUTPUT_DIR={work / 'models' / 'a'}", "--EPOCHS=1",
               "--BATCH_SIZE=8", "--MAX_SEQUENCE_LENGTH=150", "--MAX_NUM_WORDS=100", "--CORPUS_URL="])
run = work / "models" / "a" / "pretrained_external_word_embeddings"
(work / "store.path").write_text(json.loads((run / "manifest.json").read_text())["store"]["path"])
PY

# 1b. Beside it a baseline and an externalized keras-io model, and what --runtime keras answers for
#     them on real 20 Newsgroups posts (or, without the data, a few made-up texts).
timeout 300 python - "$WORK" <<'PY'
import json, sys, tarfile
from pathlib import Path
sys.path[:0] = [".", "tests"]
from conftest import write_corpus, write_vectors
from externalize_models import keras_io_model
import pretrained_word_embeddings as baseline
from external_embeddings import EmbeddingStore, Predictor
from external_embeddings.models.externalize import externalize
from external_embeddings.text.corpus import strip_headers

work = Path(sys.argv[1])
baseline.main([f"--VECTORS={work / 'tiny.txt'}", f"--TEXT_DATA_DIR={work / 'corpus'}", f"--CACHE_DIR={work / 'cache'}",
               f"--OUTPUT_DIR={work / 'models' / 'b'}", "--EPOCHS=1", "--BATCH_SIZE=8", "--MAX_SEQUENCE_LENGTH=150",
               "--MAX_NUM_WORDS=100", "--CORPUS_URL="])
store = EmbeddingStore.open((work / "store.path").read_text())
externalize(keras_io_model(work / "news.keras"), store, work / "models" / "news")
texts = ["the rocket reached orbit", "a doctor", ""]
data = Path("../shared/data/20news-bydate-train.tar.gz")
if data.exists():
    with tarfile.open(data) as archive:
        posts = [m for m in archive if m.isfile()][:40:10]
        texts += [strip_headers(archive.extractfile(m).read().decode("latin-1"))[:2000] for m in posts]
answers = Predictor(store, work / "models", runtime="keras").predict(texts)
(work / "expected.json").write_text(json.dumps({"texts": texts, "answers": answers}))
PY

# 2. A venv from requirements-serve.txt alone.
python -m venv "$WORK/venv"
timeout 600 "$WORK/venv/bin/pip" install --quiet --disable-pip-version-check -r requirements-serve.txt

# 3. Without Keras there, --runtime keras (the default) is refused in one line; then serve on
#    ONNX on a free port, until ready.
if "$WORK/venv/bin/python" -m external_embeddings serve --store "$(cat "$WORK/store.path")" --models "$WORK/models" \
        2> "$WORK/refused.txt"; then
    echo "serve without --runtime onnx should be refused in the serve-only venv"; exit 1
fi
grep -q "^error: --runtime keras: needs Keras" "$WORK/refused.txt" && [ "$(wc -l < "$WORK/refused.txt")" -eq 1 ] \
    || { cat "$WORK/refused.txt"; exit 1; }
PORT=$(python -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(cd "$ROOT" && exec "$WORK/venv/bin/python" -m external_embeddings serve --runtime onnx --store "$(cat "$WORK/store.path")" \
    --models "$WORK/models" --port "$PORT" --workers 2 --poll-seconds 0) > "$WORK/serve.log" 2>&1 &
SERVER=$!
for _ in $(seq 120); do
    grep -q "^Serving" "$WORK/serve.log" && break
    kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/serve.log"; exit 1; }
    sleep 0.5
done
grep -q "^Serving 3 models" "$WORK/serve.log" || { echo "not ready after 60 s"; cat "$WORK/serve.log"; exit 1; }

# 4. Real requests: answers from the model, and no TensorFlow in the worker that gave them.
URL=http://127.0.0.1:$PORT
for _ in 1 2 3 4; do
    curl -sf --max-time 30 -H "Content-Type: application/json" -d '{"texts": ["the rocket reached orbit", "a doctor"]}' \
        "$URL/v1/predict" > "$WORK/answer.json"
    python -c 'import json, sys; r = json.load(open(sys.argv[1]))["results"]
assert len(r) == 2 and all(a["models"]["a/pretrained_external_word_embeddings"]["label"] for a in r), r' "$WORK/answer.json"
    curl -sf --max-time 30 "$URL/v1/models" > "$WORK/models.json"
    python -c 'import json, sys; w = json.load(open(sys.argv[1]))["worker"]
assert w["runtime"] == "onnx" and not w["imported"]["tensorflow"] and not w["imported"]["keras"], w' "$WORK/models.json"
done
# 5. The same probabilities as --runtime keras gave in the main environment, for all three kinds,
#    asked through the Open Inference Protocol (its answer holds every label's probability).
python - "$WORK" "$URL" <<'PY'
import json, sys, urllib.request
from pathlib import Path
expected = json.loads((Path(sys.argv[1]) / "expected.json").read_text())
texts, worst = expected["texts"], 0.0
names = list(expected["answers"][0])
for name in names:
    body = {"inputs": [{"name": "text", "shape": [len(texts)], "datatype": "BYTES", "data": texts}]}
    request = urllib.request.Request(f"{sys.argv[2]}/v2/models/{name}/infer", json.dumps(body).encode())
    reply = json.load(urllib.request.urlopen(request, timeout=60))
    got = next(o for o in reply["outputs"] if o["name"] == "probabilities")["data"]
    want = [p for answer in expected["answers"] for p in answer[name]["probabilities"].values()]
    assert len(got) == len(want), (name, len(got), len(want))
    worst = max(worst, max(abs(a - b) for a, b in zip(got, want)))
assert len(names) == 3 and worst <= 1e-5, (names, worst)
print(f"serve-only venv, --runtime onnx: {', '.join(names)} on {len(texts)} texts, within {worst:.1g} of --runtime keras")
PY
echo "serve-only venv (requirements-serve.txt): served $(python -c 'import json, sys; print(json.load(open(sys.argv[1]))["results"][0])' "$WORK/answer.json")"
