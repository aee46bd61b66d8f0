"""Training batches: id sequences, turned into vectors one batch at a time when a store is given.

This is what keeps the external script's memory near the baseline's: only one
``(batch, length, dim)`` array exists at a time, never the whole ``(N, length, dim)`` one.
"""

import math

import keras
import numpy as np


class Batches(keras.utils.PyDataset):
    """``(inputs, labels)`` batches from an ``(N, length)`` id array; shuffled each epoch if asked.

    Without a store the inputs are the ids (for a model with its own Embedding); with one,
    they are ``store.gather(ids)``, the vectors the Embedding would have produced.
    """

    def __init__(self, ids, labels, batch_size, store=None, shuffle=False, seed=0):
        super().__init__()
        self.ids, self.labels, self.batch_size, self.store = ids, labels, batch_size, store
        self.order = np.arange(len(ids))
        self.rng = np.random.default_rng(seed) if shuffle else None
        self.on_epoch_end()

    def __len__(self):
        return math.ceil(len(self.ids) / self.batch_size)

    def __getitem__(self, index):
        rows = self.order[index * self.batch_size:(index + 1) * self.batch_size]
        inputs = self.ids[rows]
        if self.store is not None:
            inputs = self.store.gather(inputs)
        return inputs, self.labels[rows]

    def on_epoch_end(self):
        if self.rng is not None:
            self.rng.shuffle(self.order)
