"""``kai provenance``: independence checks and reference fingerprints (registered on ``kai``)."""

from __future__ import annotations
