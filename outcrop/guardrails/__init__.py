"""Guardrails: definitions and versions (store.py); their enforcement comes with the classifiers."""
