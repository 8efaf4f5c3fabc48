"""kaieval: reproducible evaluation and selection for a sovereign-AI foundation-model programme.

The public API is curated here; everything else is private to its module.
"""

from kaieval.errors import KaiError
from kaieval.version import __version__, code_version

__all__ = ["KaiError", "__version__", "code_version"]
