"""Settings come from the environment, with safe defaults for the embedded quick start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _settings(env, cwd=ROOT):
    clean = {
        k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG", "DATABASE_URL")
    }
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, config.settings as s; print(json.dumps([s.DEBUG, str(s.DATABASES['default']['NAME']), s.SNAPSHOT_INTERVAL]))",
        ],
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
    )


def test_without_debug_a_secret_key_is_required():
    result = _settings({"DEBUG": "false"})
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_debug_gets_a_development_key_and_the_sqlite_file_lives_in_the_project(tmp_path):
    result = _settings({"DEBUG": "true"}, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f'[true, "{ROOT / "db.sqlite3"}", 100]'


def test_snapshot_interval_must_be_positive():
    result = _settings({"DEBUG": "true", "SNAPSHOT_INTERVAL": "0"})
    assert "SNAPSHOT_INTERVAL must be a positive" in result.stderr
