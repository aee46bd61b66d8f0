"""Texts in, token ids out: tokenizer rules, files of texts, and the 20 Newsgroups corpus.

The lowest room: it uses only ``errors`` and ``atomic``, and nothing here imports numpy-heavy
or TensorFlow code, so every other room can tokenize.
"""
