"""TESTPLAN B9: two writer processes and a follower process on one SQLite file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

WRITER = """
import os, sys, uuid, django
from datetime import UTC, datetime
django.setup()
import eventstore as es
stream = uuid.uuid4()
for i in range(int(sys.argv[1])):
    es.append(stream, [es.NewEvent(event_type="Tick", data={"i": i}, occurred_at=datetime.now(UTC))],
              stream_type="t", expected_version=i)
print(stream)
"""

FOLLOWER = """
import json, sys, time, django
django.setup()
import eventstore as es
want, seen, cursor, deadline = int(sys.argv[1]), [], 0, time.monotonic() + 120
while len(seen) < want and time.monotonic() < deadline:
    batch = es.read_all(after_position=cursor, limit=7)
    if batch:
        seen += [[e.position, str(e.stream_id), e.version] for e in batch]
        cursor = batch[-1].position
    else:
        time.sleep(0.01)
print(json.dumps(seen))
"""


def test_two_writer_processes_and_a_follower_on_one_sqlite_file(tmp_path):
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DEBUG": "true",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'shared.sqlite3'}",
        "PYTHONPATH": str(ROOT),
    }
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    per_writer = 150
    follower = subprocess.Popen(
        [sys.executable, "-c", FOLLOWER, str(2 * per_writer)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(per_writer)],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    streams = []
    for writer in writers:
        out, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err  # no "database is locked"
        streams.append(out.strip())
    out, err = follower.communicate(timeout=150)
    assert follower.returncode == 0, err
    seen = json.loads(out)
    positions = [p for p, _, _ in seen]
    assert positions == list(range(1, 2 * per_writer + 1))  # dense, increasing, exactly once
    for stream in streams:
        assert [v for _, s, v in seen if s == stream] == list(range(1, per_writer + 1))
