"""The bulk client's former name, kept so that ``python -m app.client ...`` still runs; the client is ``app.bulk``."""
