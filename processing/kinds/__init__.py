"""Model kinds: what a model's outputs mean (an output kind) and what its input takes (an input kind).

Each output kind is one module here, registered in ``registry.py``; nothing else names a kind.
"""
