"""quiet_transformers: third-party bars, logs and known warnings off inside, restored after."""

from __future__ import annotations

import os
import warnings

import pytest

from kaieval.quiet import quiet_transformers


def test_settings_are_off_inside_and_restored_after(monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers.utils import logging as hf_logging

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)
    hf_logging.enable_progress_bar()
    level = hf_logging.get_verbosity()
    with quiet_transformers():
        assert not hf_logging.is_progress_bar_enabled()
        assert hf_logging.get_verbosity() == hf_logging.ERROR
        assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
    assert hf_logging.is_progress_bar_enabled()
    assert hf_logging.get_verbosity() == level
    assert "HF_HUB_DISABLE_PROGRESS_BARS" not in os.environ


def test_known_warnings_are_ignored_and_others_still_show(
        capfd: pytest.CaptureFixture[str]) -> None:
    from transformers.utils import logging as hf_logging

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with quiet_transformers():
            hf_logging.get_logger("transformers.modeling_utils").warning("advice for users")
            warnings.warn("TypedStorage is deprecated", UserWarning, stacklevel=1)
            warnings.warn("something real", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["something real"]
    assert "advice for users" not in capfd.readouterr().err
