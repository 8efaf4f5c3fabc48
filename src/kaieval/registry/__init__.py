"""The reference registry: the models a stage's independence gate checks candidates against.

A registry is a folder with ``registry.yaml`` (the entries and their metadata) and
the reference files it owns (fingerprints). See :mod:`kaieval.registry.folder`.
"""

from kaieval.registry.folder import (
    REGISTRY_FILE,
    Registry,
    RegistryEntry,
    add_reference,
    default_registry_dir,
    load_registry,
)

__all__ = ["REGISTRY_FILE", "Registry", "RegistryEntry", "add_reference",
           "default_registry_dir", "load_registry"]
