"""Keep third-party chatter out of the terminal while models are loaded and run.

transformers draws a "Loading weights" progress bar for every model it loads and
logs advice meant for its own users (generation flags, attention masks, tied
weights); huggingface_hub draws download bars. kaieval reports its own progress,
so while a model is loaded or built these are turned off: transformers' logging
to errors only, its and the Hub's progress bars off, and a short list of known
harmless Python warnings ignored. Real errors still raise.

Everything is restored on exit, so a library caller's own settings survive.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import warnings
from collections.abc import Iterator
from typing import Any

# Python warnings third-party code emits on every load although nothing is wrong.
HARMLESS_WARNINGS = (
    r".*TypedStorage is deprecated.*",
    r".*`torch_dtype` is deprecated.*",
    r".*`resume_download` is deprecated.*",
    r".*generation flags are not valid.*",
    r".*do_sample.* is set to `False`.*",
    r"Cannot disable progress bars.*",  # the user's HF_HUB_DISABLE_PROGRESS_BARS=0 wins
)


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Within the block: no transformers / Hub progress bars, logs or known warnings."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hub_env = os.environ.get("HF_HUB_DISABLE_PROGRESS_BARS")
    with warnings.catch_warnings():
        for pattern in HARMLESS_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
        os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        hub_bars = _hub_bars(enable=False)
        try:
            yield
        finally:
            hf_logging.set_verbosity(level)
            if bars:
                hf_logging.enable_progress_bar()
            if hub_bars:
                _hub_bars(enable=True)
            if hub_env is None:
                os.environ.pop("HF_HUB_DISABLE_PROGRESS_BARS", None)
            else:
                os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = hub_env


def _hub_bars(*, enable: bool) -> bool:
    """Switch huggingface_hub's progress bars; whether they were on before."""
    try:  # the module, not the ``tqdm`` class that ``huggingface_hub.utils`` exports as well
        hub: Any = importlib.import_module("huggingface_hub.utils.tqdm")
    except ImportError:
        return False
    was_on = not hub.are_progress_bars_disabled()
    if enable:
        hub.enable_progress_bars()
    else:
        hub.disable_progress_bars()
    return bool(was_on)
