"""The doors over the one ``Predictor``: the HTTP app and its workers, Ray Serve, Ray Data scoring.

May use everything below: ``predictor``, ``models``, ``store``, ``text``, ``errors``. Only
``cli`` sits above this room.
"""
