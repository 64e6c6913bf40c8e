"""Demo models for imagegate, built from installed packages: ``python -m tools.modelbuild --out build/models``.

* ``mobilenet_v2``: torchvision's ImageNet MobileNetV2 weights ported to a TensorFlow SavedModel;
* ``tiny``: a fixed mean-colour classifier, for throughput work;
* ``digits``: a small CNN on scikit-learn's 8x8 digits, versions 1 (barely trained) and 2;
* ``models.config``: TF Serving's model config for the three.

See docs/models.md for the contract and the verification numbers.
"""
