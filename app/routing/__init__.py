"""Model routes: weighted, sticky splits across TF Serving versions or labels, canaries and their rollback."""
