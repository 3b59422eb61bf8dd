"""The tests' own rule: a missing outside part skips a test locally and fails it in CI."""

from __future__ import annotations

import pytest

from tests.support import require


def test_a_missing_part_fails_in_ci_and_is_skipped_elsewhere(monkeypatch):
    require(True, "NATS", "started by .ci/run")  # present: nothing happens
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"NATS is required in CI \(started by"):
        require(False, "NATS", "started by .ci/run")
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="NATS is not available"):
        require(False, "NATS", "started by .ci/run")
