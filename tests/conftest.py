"""Every test starts with an empty result cache, so a test never sees another's output;
Ctrl-C is handled as usual even when the suite was started in the background."""

from __future__ import annotations

import signal

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # A shell starts background jobs (`cmd &`) with SIGINT ignored, and children inherit that;
    # the interruption tests need the usual handling, here and in their subprocesses.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _private_result_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HATCH_WIZER_CACHE_DIR", str(tmp_path_factory.mktemp("result-cache")))
