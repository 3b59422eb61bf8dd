"""Long commands report progress off a terminal too (issue 18): a plain line every few
seconds and one at the end, where tqdm would print nothing."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from bank.progress import LineProgress, progress


def test_off_a_terminal_progress_is_plain_lines():
    out = io.StringIO()
    with progress(total=10, desc="seeding", file=out, verbosity=1, interval=0.0) as bar:
        assert isinstance(bar, LineProgress)
        bar.update(4)
        bar.update(6)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("seeding: 4 / 10 ev (40%), ")
    assert lines[-1].startswith("seeding: 10 / 10 ev (100%), ")
    assert "\r" not in out.getvalue()


def test_at_verbosity_zero_nothing_is_written():
    out = io.StringIO()
    with progress(total=10, desc="x", file=out, verbosity=0) as bar:
        bar.update(10)
    assert out.getvalue() == ""


@pytest.mark.django_db(transaction=True)
def test_seed_demo_reports_progress_when_its_output_is_not_a_terminal():
    err = io.StringIO()
    call_command("seed_demo", "--events", "120", stdout=io.StringIO(), stderr=err)
    assert "seeding: " in err.getvalue() and " / 120 ev (100%)" in err.getvalue()
