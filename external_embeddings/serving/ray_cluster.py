"""What the two Ray doors share: connecting to a cluster, shipping the package, each node's store.

``score`` (Ray Data) and ``serve --ray`` (Ray Serve) both use these, so they live below both.
"""

import contextlib
import logging
import signal
import threading
from pathlib import Path

from ..errors import InputError


def open_node_store(store_path, fingerprint):
    """This node's copy of the store, verified; refused if it is not the driver's (another fingerprint).

    Each node maps its own copy, and answers must not depend on the node that gives them.
    """
    import ray

    from ..store.embedding_store import EmbeddingStore

    store = EmbeddingStore.open(store_path, verify=True)
    if store.fingerprint != fingerprint:
        raise InputError(f"{store.path} on node {ray.util.get_node_ip_address()}", f"has fingerprint "
                         f"{store.fingerprint[:12]}, the driver's copy has {fingerprint[:12]}", "copy the same store "
                         "to every node (python -m external_embeddings verify STORE prints the fingerprint)")
    return store


def input_error(error):
    """The InputError an actor raised, from inside Ray's wrappers, or None.

    A task's error keeps its cause; an actor that died in ``__init__`` keeps only the text of
    its traceback, whose last line is the error's message.
    """
    seen, marker = set(), f"{InputError.__module__}.{InputError.__name__}: "
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, InputError):
            return error
        if marker in str(error):
            where, _, problem = str(error).rsplit(marker, 1)[1].splitlines()[0].partition(": ")
            return InputError(where, problem)
        error = getattr(error, "cause", None) or error.__cause__ or error.__context__
    return None


@contextlib.contextmanager
def connected(address=None, cpus=None, runtime_env=None):
    """Connect to a Ray cluster, or start a quiet local one (127.0.0.1, no dashboard); always disconnect."""
    import ray

    if ray.is_initialized():  # a caller (a test) already connected: use its cluster, leave it running
        yield ray
        return
    options = dict(address=address, log_to_driver=False, logging_level=logging.ERROR, runtime_env=runtime_env)
    if address is None:  # "local": a new instance, even when RAY_ADDRESS or a `ray start` on this machine names one
        options.update(address="local", num_cpus=cpus, include_dashboard=False, _node_ip_address="127.0.0.1")
    try:
        ray.init(**options)
    except (ConnectionError, ValueError, RuntimeError) as e:
        raise InputError(f"--address {address}", f"cannot connect to a Ray cluster ({e})",
                         "start one with: ray start --head, or leave --address out") from None
    def stop(signum, frame):
        raise KeyboardInterrupt

    # SIGTERM (kill, systemd, Kubernetes) stops Ray as Ctrl-C does, rather than leaving it running.
    previous = signal.signal(signal.SIGTERM, stop) if threading.current_thread() is threading.main_thread() else None
    try:
        yield ray
    finally:
        ray.shutdown()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def package_env():
    """Ship this package to every node, so workers import the same code as the driver."""
    return {"py_modules": [str(Path(__file__).resolve().parents[1])], "excludes": ["__pycache__"]}


def on_every_node(path):
    """A path as each node should read it: absolute, except that ``~`` is each node's own home."""
    return str(path) if str(path).startswith("~") else str(Path(path).resolve())
