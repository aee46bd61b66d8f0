"""Frozen word embeddings shared by many Keras models: one memory-mapped store, K models.

Rooms, lowest first; a module imports only from its own room and the ones before it:
``errors``, ``atomic``, ``settings`` → ``text`` → ``store`` → ``vectors`` → ``sources``,
``models``, ``batches`` → ``runtime`` → ``predictor`` → ``serving`` → ``cli``.

Importing the package (and opening or converting a store) never imports TensorFlow.
"""

from .errors import InputError, MemoryBudgetError
from .predictor import Predictor
from .store import EmbeddingStore

__all__ = ["EmbeddingStore", "InputError", "MemoryBudgetError", "Predictor"]
