"""Running a group of loaded models on one batch of inputs: Keras, or a lighter runtime.

May use ``models``, ``store``, ``text``, ``errors``; never the predictor or a door above it.
"""
