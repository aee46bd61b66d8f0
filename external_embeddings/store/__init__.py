"""The shared, memory-mapped embedding store: writing one, opening it in constant time, verifying it.

May use ``text`` (a batch of token lists becomes vectors here), ``errors`` and ``atomic``.
"""

from .embedding_store import EmbeddingStore, convert_store, write_store

__all__ = ["EmbeddingStore", "convert_store", "write_store"]
