"""Every test starts with an empty result cache, so a test never sees another's output."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _private_result_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HATCH_WIZER_CACHE_DIR", str(tmp_path_factory.mktemp("result-cache")))
