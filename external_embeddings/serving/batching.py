"""What a server worker holds besides HTTP: the current model set (reloaded and swapped whole)
and the micro-batcher that runs concurrent requests through the Predictor together.

One inference thread per worker: the runtime already uses the worker's cores for one batch
(``--threads``), and a single thread means a batch never competes with another batch of the same worker. Loading
(start-up and reloads) runs in another thread, so the old set keeps serving meanwhile; the
new set replaces the old one in one assignment, and each batch takes the set once, so no
request ever sees half of a set.
"""

import asyncio
import concurrent.futures
import logging
import os
from pathlib import Path

from ..errors import InputError
from ..predictor import walk_models

log = logging.getLogger("external_embeddings.serving")


def folder_signature(models_dir):
    """(path, mtime, size, inode) of every file under the models folder, through links to folders,
    hidden ones skipped, so that a new, removed or rewritten model, or a link pointed at another
    folder, changes it. Cheap: a few stat calls per model."""
    root = Path(models_dir)
    out = []
    try:
        for folder, names in walk_models(root, loops="skip"):  # a loop is the load's error to report
            for name in names:
                try:
                    st = os.stat(folder / name)
                except OSError:  # removed while we looked, or a broken link: the next poll sees the rest
                    continue
                out.append((os.path.relpath(folder / name, root), st.st_mtime_ns, st.st_size, st.st_ino))
    except FileNotFoundError:  # the models folder itself is gone: the load says so
        pass
    return tuple(out)


class ModelSet:
    """The Predictor being served; ``reload`` builds a new one beside it and swaps it in."""

    def __init__(self, store, models_dir, runtime=None):
        self.store, self.models_dir, self.runtime = store, Path(models_dir), runtime
        self.predictor, self.error, self.generation = None, "loading the models", 0
        self.signature = self.refused = None
        self.on_loaded = lambda: None  # called after each successful load
        self._lock = asyncio.Lock()

    def _load(self):
        from ..predictor import Predictor

        signature = folder_signature(self.models_dir)
        try:
            return signature, Predictor(self.store, self.models_dir, runtime=self.runtime), None
        except InputError as e:
            return signature, None, str(e)
        except Exception as e:  # a file vanishing mid-read, Keras internals: refuse the set, keep serving
            return signature, None, f"{self.models_dir}: cannot be loaded ({type(e).__name__}: {e})"

    async def reload(self):
        """Load the folder's models; swap them in, or keep the old set and return the error."""
        async with self._lock:
            signature, predictor, error = await asyncio.get_running_loop().run_in_executor(None, self._load)
            if error:
                self.refused = signature
                if self.predictor is None:
                    self.error = error
                log.error("error: reload refused, %s; %s", error, "still serving the previous models"
                          if self.predictor else "no models to serve")
                return error
            self.predictor, self.signature, self.error = predictor, signature, None
            self.generation += 1
            log.info("serving %d models (generation %d): %s", len(predictor.models), self.generation,
                     ", ".join(predictor.models))
            self.on_loaded()
            return None

    async def poll(self, seconds):
        """Reload whenever the folder changes; a refused change is not retried until it changes again."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(seconds)
            signature = await loop.run_in_executor(None, folder_signature, self.models_dir)
            if signature not in (self.signature, self.refused):
                log.info("%s changed: reloading", self.models_dir)
                await self.reload()


class Batcher:
    """Runs queued requests through the current Predictor, merging concurrent ones.

    Like TF Serving's batching: a batch takes queued requests up to ``max_texts`` texts and
    waits at most ``max_wait`` seconds for more; ``max_texts=0`` runs each request alone.
    With a wait of 0 it still merges the requests that queued while the last batch ran.
    """

    def __init__(self, models, max_texts, max_wait, on_batch=lambda names, texts: None):
        self.models, self.max_texts, self.max_wait, self.on_batch = models, max_texts, max_wait, on_batch
        self.queue, self._carried = asyncio.Queue(), None
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="inference")

    async def submit(self, texts, models=None, top_k=None, full=False):
        """The per-text results for one request, in its order, once its batch has run: trimmed
        for /v1/predict, or with ``full`` the Predictor's own answers (every probability)."""
        future = asyncio.get_running_loop().create_future()
        future.full = full  # carried on the future, so that the queue's jobs keep their shape
        await self.queue.put((texts, models, top_k, future))
        return await future

    async def _next_batch(self):
        job = self._carried or await self.queue.get()
        self._carried, jobs, count = None, [job], len(job[0])
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while self.max_texts and count < self.max_texts:
            try:
                job = self.queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - asyncio.get_running_loop().time()
                if remaining <= 0:
                    break
                try:
                    job = await asyncio.wait_for(self.queue.get(), remaining)
                except asyncio.TimeoutError:
                    break
            if count + len(job[0]) > self.max_texts:
                self._carried = job  # first in the next batch
                break
            jobs.append(job)
            count += len(job[0])
        return jobs

    async def run(self):
        while True:
            jobs = await self._next_batch()
            try:
                await self._run(jobs)
            except Exception as e:  # never let one batch stop the loop
                log.exception("batch failed")
                for *_, future in jobs:
                    if not future.done():
                        future.set_exception(e)

    async def _run(self, jobs):
        predictor = self.models.predictor  # one set for the whole batch, even if a reload swaps now
        accepted = []
        for texts, models, top_k, future in jobs:
            try:  # the set may have changed since the request was checked
                accepted.append((texts, predictor.check_request(models, top_k), top_k, future))
            except InputError as e:
                if not future.done():
                    future.set_exception(e)
        if not accepted:
            return
        wanted = {name for _, names, _, _ in accepted for name in names}
        names = [name for name in predictor.models if name in wanted]
        ks = [k for *_, k, _ in accepted if k is not None]
        texts = [text for job in accepted for text in job[0]]
        self.on_batch(names, len(texts))
        results = await asyncio.get_running_loop().run_in_executor(
            self.executor, predictor.predict, texts, names, max(ks) if ks else None)
        start = 0
        for texts, names, top_k, future in accepted:
            mine = results[start:start + len(texts)]
            start += len(texts)
            if not future.done():  # the client may have gone
                shape = (lambda answer: answer) if future.full else (lambda answer: trim(answer, top_k))
                future.set_result([{name: shape(result[name]) for name in names} for result in mine])


def trim(answer, top_k):
    """One model's answer for the wire: label, probability, known words, and its top k if asked."""
    out = {"label": answer["label"], "probability": answer["probability"], "known_words": answer["known_words"]}
    if top_k is not None:
        out["top_k"] = answer["top_k"][:top_k]
    return out
