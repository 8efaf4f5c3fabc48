"""Benchmark tasks: our YAML schema, lm-eval YAMLs (common subset), the bundled catalogue.

Public API: ``load_task``, ``list_catalog``, ``CatalogEntry``, ``ConfiguredTask``,
``TaskConfig``. Everything else is private to the package.
"""

from kaieval.bench.tasks.catalog import CATALOG_DIR, CatalogEntry, list_catalog
from kaieval.bench.tasks.config import TaskConfig
from kaieval.bench.tasks.load import load_task
from kaieval.bench.tasks.task import ConfiguredTask

__all__ = ["CATALOG_DIR", "CatalogEntry", "ConfiguredTask", "TaskConfig", "list_catalog",
           "load_task"]
