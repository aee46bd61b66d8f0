"""Reading vectors files (GloVe, word2vec and fastText text, word2vec binary, gensim) into a store.

``read.read_vectors`` is the entry point; one module per format below it. May use ``store``
(to hash and write what it read), ``errors`` and ``atomic``.
"""
