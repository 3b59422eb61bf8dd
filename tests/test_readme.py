"""Every ``make manage`` command in the README works when pasted on a fresh clone after
``make run`` (issue 17).

The commands are read from the README itself: each line of its code blocks, and each inline
code span, that runs ``make manage ARGS=…``. They run in README order, through ``bash`` and
the real Makefile, in a scratch "clone" (the Makefile and manage.py copied, everything else
linked, so files the commands write stay in it) on a fresh SQLite database prepared as
``make run`` prepares it (migrate, seed_demo, verify_events --full). Followers are bounded:
``run_projections`` and ``relay_events`` get ``--once``; a command that needs NATS runs only
when NATS answers (``require``: CI starts it).
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT, manage_env, require

README = ROOT / "README.md"
MANAGE = re.compile(r"""^(?:[A-Z_]+=\S+\s+)*make manage ARGS=(?:"(?:[^"\\]|\\.)*"|'[^']*')""")
FOLLOWERS = ("run_projections", "relay_events")
# What `make run` does before it serves (the Makefile's `run` target).
RUN_SETUP = (
    'make manage ARGS="migrate --no-input"',
    'make manage ARGS="seed_demo"',
    'make manage ARGS="verify_events --full --verbosity 0"',
)


def readme_commands(text: str) -> list[str]:
    """The ``make manage`` commands of the README, in order, each as it would be pasted
    (the prose's ``make manage ARGS="…"``, the form itself, is no command)."""
    found = []
    in_block = False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            in_block = not in_block
            continue
        if in_block:
            command = stripped.split("  #", 1)[0].strip()
            if MANAGE.match(command):
                found.append(command)
        else:
            for span in re.findall(r"`([^`]+)`", line):
                if MANAGE.match(span.strip()) and 'ARGS="…"' not in span:
                    found.append(span.strip())
    return found


def test_the_readme_documents_make_manage_and_the_makefile_has_it():
    commands = readme_commands(README.read_text(encoding="utf-8"))
    assert len(commands) >= 20, commands
    assert any("seed_demo" in c for c in commands) and any(
        "export_evidence" in c for c in commands
    )
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^manage: ", makefile, re.M)
    # Outside the deployment recipes (run on a production host), no `python manage.py`
    # is offered to a newcomer: it would run without the virtualenv and without DEBUG.
    quick_start = README.read_text(encoding="utf-8").split("## Configuration")[0]
    assert "python manage.py" not in quick_start.replace("`python manage.py …`", "")


def bounded(command: str) -> str:
    """A follower is run to the end of the store, not for ever."""
    if any(name in command for name in FOLLOWERS) and "--once" not in command:
        return re.sub(r'ARGS="([^"]*)"', r'ARGS="\1 --once"', command)
    return command


def nats_answers(url: str) -> bool:
    host, _, port = url.removeprefix("nats://").partition(":")
    try:
        socket.create_connection((host, int(port or 4222)), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture
def clone(tmp_path):
    """A scratch clone: the Makefile and manage.py copied, the rest linked."""
    work = tmp_path / "clone"
    work.mkdir()
    for entry in ROOT.iterdir():
        if entry.name in {"Makefile", "manage.py"}:
            shutil.copy2(entry, work / entry.name)
        elif not entry.name.startswith(("db.sqlite3", "test-db", ".git", ".pytest")):
            (work / entry.name).symlink_to(entry)
    return work


def run(command: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # `-o .venv/.installed`: never re-create the virtualenv from a test, even if the lock
    # changed under it (on a clone `make run` has just made it).
    line = command.replace("make manage", "make -o .venv/.installed manage", 1)
    return subprocess.run(
        ["bash", "-c", line],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_make_manage_command_in_the_readme_runs_on_a_fresh_database(clone):
    require(shutil.which("make") is not None, "GNU make", "apt-get install make")
    env = {
        key: value
        for key, value in manage_env(f"sqlite:///{clone / 'fresh.sqlite3'}").items()
        if key not in {"MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "DEBUG"}
    }
    env.pop("NATS_URL", None)
    failures = []
    for command in RUN_SETUP:
        result = run(command, clone, env)
        assert result.returncode == 0, f"{command}:\n{result.stdout}\n{result.stderr}"
    unrun: list[str] = []
    for command in readme_commands(README.read_text(encoding="utf-8")):
        nats = re.match(r"NATS_URL=(\S+)", command)
        if nats and not nats_answers(nats.group(1)):
            unrun.append(command)  # reported after the others ran: a skip, or in CI a failure
            continue
        result = run(bounded(command), clone, env)
        if result.returncode != 0:
            failures.append(
                f"{command}\n  exit {result.returncode}\n  {result.stdout[-800:]}"
                f"\n  {result.stderr[-1500:]}"
            )
    assert not failures, "README commands that failed:\n\n" + "\n\n".join(failures)
    assert (clone / "evidence.json").exists() and (clone / "digest.json").exists()
    require(not unrun, f"NATS for {', '.join(f'`{c}`' for c in unrun)}", ".ci/run starts it")
