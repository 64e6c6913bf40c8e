"""Helpers shared by test packages: the local TF-Serving-compatible backend and test SavedModels."""
