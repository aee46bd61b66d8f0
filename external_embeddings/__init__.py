"""Frozen word embeddings shared by many Keras models: one memory-mapped store, K models.

Importing the package (and opening or converting a store) never imports TensorFlow.
"""

from .errors import InputError, MemoryBudgetError
from .predictor import Predictor
from .store import EmbeddingStore

__all__ = ["EmbeddingStore", "InputError", "MemoryBudgetError", "Predictor"]
