"""A development and test stand-in for TensorFlow Serving's ``tensorflow_model_server``.

Production uses TF Serving. This package exists because ``tensorflow_model_server`` cannot be installed
everywhere the project is developed and tested: ``python -m tools.localserving`` takes the same flags and config
files, loads the same SavedModels and answers the same gRPC API (``PredictionService.Predict``,
``PredictionService.GetModelMetadata``, ``ModelService.GetModelStatus``) with the same status codes, so the
web tier can be run and tested against it unchanged. See ``docs/local-backend.md`` for what it leaves out.

Only ``localserving.server`` and ``localserving.servable`` import TensorFlow; the other modules are plain
Python and numpy, so the config parsers and tensor conversion can be tested without the TF runtime.
"""
