"""Synthetic models and corpora: recipes, deterministic builds, the Korean corpus generator.

Used by the demo (its stand-ins) and by the provenance calibration (its controls).
"""
