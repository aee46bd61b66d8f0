"""Models: the scripts' CNN, a model folder's files (manifest, model.keras), and a run's results.

May use ``store``, ``text``, ``errors`` and ``atomic``; Keras is imported inside functions only.
"""
