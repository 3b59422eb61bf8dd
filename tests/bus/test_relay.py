"""The event bus relay against a real NATS JetStream server on loopback.

Each test publishes to a stream of its own (``TEST_<random>`` on subjects ``t<random>.>``) and
deletes it afterwards, so tests never see each other's messages. The shared server is the one
on 127.0.0.1:4222 (``.ci/run`` starts it); the broker-away test starts a private nats-server.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid

import pytest
from django.core.management import CommandError, call_command

import eventstore as es
from bank.domain import DomainError
from bank.services import Actor, approvals, reversals
from bank.services import accounts as svc
from projections import runner
from projections.models import Checkpoint, DeadLetter
from projections.relay import (
    BusConfig,
    Relay,
    RelayConfigError,
    check_subjects,
    published_subjects,
)
from tests.projections.helpers import bulk_store, wait_until
from tests.support import database_url, manage_env, now, require, run_threads, start_manage

pytestmark = pytest.mark.django_db(transaction=True)

NATS_URL = os.environ.get("TEST_NATS_URL", "nats://127.0.0.1:4222")
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
ACTOR = Actor.system("tests")


def _reachable(url: str) -> bool:
    host, port = url.rsplit("//", 1)[-1].rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        return False
    return True


@pytest.fixture(scope="session")
def nats_server():
    require(_reachable(NATS_URL), f"NATS with JetStream at {NATS_URL}", ".ci/run starts it")
    return NATS_URL


def _config(url: str) -> BusConfig:
    tag = uuid.uuid4().hex[:10]
    return BusConfig(
        url=url,
        stream=f"TEST_{tag}",
        subjects=[f"t{tag}.>"],
        subject_prefix=f"t{tag}.",
        duplicate_window=120.0,
        replicas=1,
    )


async def _delete_stream(config: BusConfig) -> None:
    import nats

    nc = await nats.connect(config.url, connect_timeout=2, allow_reconnect=False)
    with contextlib.suppress(Exception):  # never created
        await nc.jetstream().delete_stream(config.stream)
    await nc.close()


@pytest.fixture
def bus(nats_server):
    config = _config(nats_server)
    yield config
    asyncio.run(_delete_stream(config))


def _stream_messages(config: BusConfig) -> list[dict]:
    """Every message in the stream, in stream order: subject, headers and decoded body."""

    async def read():
        import nats

        nc = await nats.connect(config.url, connect_timeout=2, allow_reconnect=False)
        js = nc.jetstream(timeout=10)
        consumer = await js.pull_subscribe(
            config.subjects[0], stream=config.stream, durable=None, inbox_prefix=None
        )
        info = await js.stream_info(config.stream)
        messages = []
        while len(messages) < info.state.messages:
            for msg in await consumer.fetch(batch=1000, timeout=10):
                messages.append(
                    {
                        "subject": msg.subject,
                        "headers": dict(msg.headers or {}),
                        "body": json.loads(msg.data),
                        "seq": msg.metadata.sequence.stream,
                    }
                )
                await msg.ack()
        await nc.close()
        return messages

    return asyncio.run(read())


def _stream_count(config: BusConfig) -> int:
    async def count():
        import nats

        nc = await nats.connect(config.url, connect_timeout=2, allow_reconnect=False)
        try:
            return (await nc.jetstream().stream_info(config.stream)).state.messages
        except Exception:  # noqa: BLE001 - not created yet
            return 0
        finally:
            await nc.close()

    return asyncio.run(count())


def _all_events() -> list[es.RecordedEvent]:
    events, position = [], 0
    while batch := es.read_all(after_position=position, limit=5000):
        events += batch
        position = batch[-1].position
    return events


def _assert_each_event_once_in_order(config: BusConfig) -> list[dict]:
    """The stream holds every stored event exactly once, in global and per-stream order."""
    messages = _stream_messages(config)
    stored = _all_events()
    ids = [m["headers"]["Nats-Msg-Id"] for m in messages]
    assert len(ids) == len(set(ids)), "an event id arrived twice"
    assert ids == [str(e.event_id) for e in stored], "the stream is not the global order"
    for message in messages:
        assert message["body"]["event_id"] == message["headers"]["Nats-Msg-Id"]
        body = message["body"]
        assert message["subject"] == (
            f"{config.subject_prefix}{body['stream_type']}.{body['event_type']}"
        )
    versions = collections.defaultdict(list)
    for message in messages:
        versions[message["body"]["stream_id"]].append(message["body"]["version"])
    for stream_versions in versions.values():
        assert stream_versions == list(range(1, len(stream_versions) + 1))
    return messages


def _relay_process(config: BusConfig, *args: str) -> subprocess.Popen:
    env = manage_env(
        database_url(),
        NATS_URL=config.url,
        NATS_STREAM=config.stream,
        NATS_SUBJECT_PREFIX=config.subject_prefix,
        NATS_SUBJECTS=",".join(config.subjects),
        NATS_DUPLICATE_WINDOW_SECONDS=str(int(config.duplicate_window)),
    )
    return start_manage(env, "relay_events", "--poll-interval", "0.1", *args)


def _relay_checkpoint(config: BusConfig) -> int:
    row = Checkpoint.objects.filter(name=config.checkpoint_name).first()
    return row.position if row else 0


def test_concurrent_writers_events_arrive_once_each_in_order(bus):
    ids = [
        svc.open_account(holder_name=f"Bus {i}", initial_balance_cents=1_000, actor=ACTOR).id
        for i in range(5)
    ]
    writers = 4
    finished_writers = threading.Semaphore(0)

    def write(i):
        rng = random.Random(i)
        for _ in range(25):
            a, b = rng.sample(ids, 2)
            try:
                if rng.random() < 0.5:
                    amount = rng.randint(1, 50)
                    svc.transfer(from_account=a, to_account=b, amount_cents=amount, actor=ACTOR)
                else:
                    svc.deposit(account_id=a, amount_cents=rng.randint(1, 50), actor=ACTOR)
            except DomainError:
                pass

    def relay_until_writers_are_done():
        relay = Relay(bus, batch_size=7)
        try:
            done = 0
            while True:
                while done < writers and finished_writers.acquire(timeout=0):
                    done += 1
                if not relay.run_once() and done == writers:
                    return relay.duplicates
        finally:
            relay.shutdown()

    def role(i, barrier):
        barrier.wait()
        if i == writers:  # the relay, publishing while the writers write
            return relay_until_writers_are_done()
        try:
            return write(i)
        finally:
            finished_writers.release()

    results = run_threads(writers + 1, role)
    assert results[:writers] == [None] * writers, results
    assert results[writers] == 0, f"nothing was re-sent, yet {results[writers]} duplicates"
    assert len(_all_events()) > 5 + 50  # the opening events and most commands
    _assert_each_event_once_in_order(bus)
    assert _relay_checkpoint(bus) == es.head_position()


def test_a_resent_batch_is_dropped_by_the_duplicate_window(bus, monkeypatch):
    account = svc.open_account(holder_name="Resend", actor=ACTOR)
    for amount in range(1, 11):
        svc.deposit(account_id=account.id, amount_cents=amount, actor=ACTOR)

    class Crash(Exception):
        pass

    def crash(self, *args, **kwargs):
        raise Crash("the relay died between JetStream's acknowledgement and its checkpoint")

    relay = Relay(bus, batch_size=100)
    try:
        relay.checkpoint()  # created at 0 before the crash is armed
        with monkeypatch.context() as patch:
            patch.setattr(Checkpoint, "save", crash)
            with pytest.raises(Crash):
                relay.run_once()
        assert _stream_count(bus) == 11 and _relay_checkpoint(bus) == 0
        assert relay.run_once() == 11  # the whole batch again, after a "restart"
        assert relay.duplicates == 11
    finally:
        relay.shutdown()
    assert _relay_checkpoint(bus) == es.head_position()
    _assert_each_event_once_in_order(bus)


def test_the_traceparent_belongs_to_the_command_that_wrote_the_event(bus, spans):
    account = svc.open_account(holder_name="Traced", actor=ACTOR)
    spans.clear()
    svc.deposit(account_id=account.id, amount_cents=42, actor=ACTOR)
    (command,) = [s for s in spans.get_finished_spans() if s.name == "command.deposit"]
    relay = Relay(bus)
    try:
        assert relay.run_once() == 2
    finally:
        relay.shutdown()
    (relay_span,) = [s for s in spans.get_finished_spans() if s.name == "relay.batch"]
    assert relay_span.attributes["events_count"] == 2
    assert command.context.trace_id in {link.context.trace_id for link in relay_span.links}
    deposit = _assert_each_event_once_in_order(bus)[1]
    assert deposit["body"]["event_type"] == "MoneyDeposited"
    version, trace_id, parent_id, flags = deposit["headers"]["traceparent"].split("-")
    assert version == "00" and flags == "01"
    assert int(trace_id, 16) == command.context.trace_id
    assert deposit["body"]["metadata"]["trace_id"] == trace_id
    assert int(parent_id, 16) in {
        s.context.span_id
        for s in spans.get_finished_spans()
        if s.context.trace_id == command.context.trace_id
    }


def test_relay_lag_is_in_projection_status(bus, capsys):
    account = svc.open_account(holder_name="Lag", actor=ACTOR)
    svc.deposit(account_id=account.id, amount_cents=1, actor=ACTOR)
    relay = Relay(bus, batch_size=1)
    try:
        relay.run_once()
    finally:
        relay.shutdown()
    (row,) = runner.status([bus.checkpoint_name])
    first, second = _all_events()
    assert (row.checkpoint, row.head, row.lag_events) == (first.position, second.position, 1)
    call_command("projection_status")
    out = capsys.readouterr().out
    assert bus.checkpoint_name in out
    with pytest.raises(Exception, match="relay:"):
        call_command("projection_status", "--max-lag-events", "0")


def test_an_unconfigured_relay_does_nothing(settings, capsys):
    settings.NATS_URL = ""
    call_command("relay_events", "--once")
    assert "not configured" in capsys.readouterr().out
    assert not Checkpoint.objects.filter(name__startswith="relay:").exists()


def test_relay_events_once_publishes_everything_then_exits(bus, settings, capsys):
    account = svc.open_account(holder_name="Once", actor=ACTOR)
    svc.deposit(account_id=account.id, amount_cents=3, actor=ACTOR)
    settings.NATS_URL, settings.NATS_STREAM = bus.url, bus.stream
    settings.NATS_SUBJECTS, settings.NATS_SUBJECT_PREFIX = bus.subjects, bus.subject_prefix
    call_command("relay_events", "--once")
    out = capsys.readouterr().out
    assert f"relaying to {bus.url}, stream {bus.stream}" in out
    assert "stopped cleanly; published 2 events (0 re-sends dropped as duplicates)" in out
    assert _relay_checkpoint(bus) == es.head_position()
    _assert_each_event_once_in_order(bus)


@pytest.mark.postgres
def test_the_relay_wakes_on_notify_long_before_its_poll_interval(bus):
    account = svc.open_account(holder_name="Woken", actor=ACTOR)
    relay = _relay_process(bus, "--poll-interval", "30")
    try:
        wait_until(lambda: _relay_checkpoint(bus) == es.head_position(), "the relay to catch up")
        svc.deposit(account_id=account.id, amount_cents=9, actor=ACTOR)
        # The poll would come after 30 s: publishing within 10 s is the NOTIFY.
        wait_until(lambda: _relay_checkpoint(bus) == es.head_position(), "the NOTIFY", timeout=10)
    finally:
        relay.send_signal(signal.SIGTERM)
        out, err = relay.communicate(timeout=30)
    assert relay.returncode == 0, err
    assert "stopped cleanly; published 2 events" in out
    _assert_each_event_once_in_order(bus)


@pytest.mark.postgres
def test_a_relay_killed_mid_batch_loses_nothing_and_resends_are_dropped(bus):
    bulk_store(accounts=20, deposits_each=999)  # 20,000 events
    head = es.head_position()
    relay = _relay_process(bus, "--batch-size", "200")
    try:
        wait_until(lambda: _stream_count(bus) > 0, "the relay to publish", timeout=60)
    finally:
        relay.send_signal(signal.SIGKILL)
        relay.wait(30)
    time.sleep(0.5)  # what the dead relay had sent reaches the server
    published, checkpoint = _stream_count(bus), _relay_checkpoint(bus)
    assert checkpoint < head, "the relay was not killed mid-way"
    acknowledged = len(_all_events()) - es.count_after(checkpoint)
    assert published >= acknowledged  # the checkpoint never runs ahead of the stream
    restarted = _relay_process(bus, "--batch-size", "200", "--once")
    out, err = restarted.communicate(timeout=120)
    assert restarted.returncode == 0, err
    assert f"({published - acknowledged} re-sends dropped as duplicates)" in out
    assert _relay_checkpoint(bus) == head
    assert _stream_count(bus) == len(_all_events())
    _assert_each_event_once_in_order(bus)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.postgres
def test_the_relay_waits_for_an_absent_broker_and_resumes_without_loss(nats_server):
    port, store = _free_port(), tempfile.mkdtemp(prefix="nats-store-")
    config = _config(f"nats://127.0.0.1:{port}")

    def start_broker():
        broker = subprocess.Popen(
            [NATS_SERVER, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", store],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: _reachable(config.url), "the private NATS server to listen", timeout=30)
        return broker

    account = svc.open_account(holder_name="Away", actor=ACTOR)
    relay = _relay_process(config, "--max-backoff", "0.5")
    broker = None
    try:
        svc.deposit(account_id=account.id, amount_cents=1, actor=ACTOR)
        time.sleep(1.5)  # the relay tries, fails and backs off
        assert _relay_checkpoint(config) == 0
        broker = start_broker()
        wait_until(
            lambda: _relay_checkpoint(config) == es.head_position(), "the relay to catch up"
        )
        broker.send_signal(signal.SIGTERM)
        broker.wait(30)
        for amount in (2, 3, 4):
            svc.deposit(account_id=account.id, amount_cents=amount, actor=ACTOR)
        time.sleep(1.5)
        assert _relay_checkpoint(config) < es.head_position()
        broker = start_broker()  # same storage: the stream is still there
        wait_until(lambda: _relay_checkpoint(config) == es.head_position(), "the relay to resume")
        _assert_each_event_once_in_order(config)
    finally:
        relay.send_signal(signal.SIGTERM)
        out, err = relay.communicate(timeout=30)
        if broker is not None:
            asyncio.run(_delete_stream(config))
            broker.send_signal(signal.SIGTERM)
            broker.wait(30)
        shutil.rmtree(store, ignore_errors=True)
    assert relay.returncode == 0, err
    assert "failed" in err and "nothing is lost" in err
    assert "stopped cleanly" in out


# --- dead letters and refusals ---------------------------------------------------------------


def _use(settings, config: BusConfig) -> None:
    settings.NATS_URL, settings.NATS_STREAM = config.url, config.stream
    settings.NATS_SUBJECTS, settings.NATS_SUBJECT_PREFIX = config.subjects, config.subject_prefix
    settings.NATS_DUPLICATE_WINDOW_SECONDS = int(config.duplicate_window)


def _parked(config: BusConfig) -> list[DeadLetter]:
    return list(DeadLetter.objects.filter(follower=config.checkpoint_name).order_by("position"))


async def _last_message(config: BusConfig, subject: str) -> tuple[int, str]:
    """The stream sequence and message id of the last message on ``subject``."""
    import nats

    nc = await nats.connect(config.url, connect_timeout=2, allow_reconnect=False)
    try:
        msg = await nc.jetstream().get_last_msg(config.stream, subject)
        return msg.seq, msg.headers["Nats-Msg-Id"]
    finally:
        await nc.close()


def _append_audit_note() -> es.RecordedEvent:
    """An event of a stream type the relay publishes outside the test stream's subjects."""
    stream_id = uuid.uuid4()
    es.append(
        stream_id,
        [es.NewEvent(event_type="Noted", data={"note": "poison"}, occurred_at=now())],
        stream_type="audit",
        expected_version=0,
    )
    (event,) = es.read_stream(stream_id)
    return event


def test_a_poisoned_event_among_10000_is_parked_the_rest_published_and_it_goes_after_the_fix(
    bus, settings, capsys
):
    config = dataclasses.replace(bus, subjects=[f"{bus.subject_prefix}bank.>"])
    _use(settings, config)
    bulk_store(accounts=5, deposits_each=999)
    poison = _append_audit_note()
    bulk_store(accounts=4, deposits_each=999)
    bulk_store(accounts=1, deposits_each=998)
    assert es.count_after(0) == 10_000

    with pytest.raises(CommandError, match=r"published 10000 events .* 1 event\(s\) are parked"):
        call_command("relay_events", "--once", "--attempts", "3", "--max-backoff", "0.01")
    err = capsys.readouterr().err
    assert err.count("then it is parked); retrying in") == 2
    assert f"parked Noted at position {poison.position}" in err
    assert _relay_checkpoint(config) == es.head_position()
    messages = _stream_messages(config)
    assert len(messages) == 9_999
    assert [m["body"]["position"] for m in messages] == [
        e.position for e in _all_events() if e.position != poison.position
    ]
    (letter,) = _parked(config)
    assert (letter.position, letter.event_id, letter.attempts) == (
        poison.position,
        poison.event_id,
        3,
    )
    assert f"subject {bus.subject_prefix}audit.Noted is not among stream" in letter.error

    settings.NATS_SUBJECTS = [f"{bus.subject_prefix}bank.>", f"{bus.subject_prefix}audit.>"]
    call_command("relay_events", "--retry-parked", verbosity=0)
    assert f"{config.checkpoint_name}: 1 parked event(s) published" in capsys.readouterr().out
    (letter,) = _parked(config)
    assert letter.resolved_at is not None
    assert _stream_count(config) == 10_000
    sequence, msg_id = asyncio.run(_last_message(config, f"{bus.subject_prefix}audit.Noted"))
    assert (sequence, msg_id) == (10_000, str(poison.event_id))  # published last, after the fix
    call_command("relay_events", "--once")  # nothing parked any more: exits 0


def test_an_event_the_broker_refuses_holds_back_the_later_events_of_its_stream(bus):
    prefix = bus.subject_prefix
    config = dataclasses.replace(bus, subjects=[f"{prefix}bank.>", f"{prefix}audit.>"])
    stream_id = uuid.uuid4()
    es.append(
        stream_id,
        [
            es.NewEvent(event_type="Odd Type", data={}, occurred_at=now()),  # no valid subject
            es.NewEvent(event_type="Noted", data={}, occurred_at=now()),
        ],
        stream_type="audit",
        expected_version=0,
    )
    account = svc.open_account(holder_name="Free", actor=ACTOR)
    relay = Relay(config, attempts=1)
    try:
        assert relay.run_once() == 3
    finally:
        relay.shutdown()
    odd, noted = es.read_stream(stream_id)
    assert [(p.position, p.waits_for) for p in _parked(config)] == [
        (odd.position, None),
        (noted.position, odd.position),
    ]
    assert "is not a valid NATS subject" in _parked(config)[0].error
    assert [m["body"]["stream_id"] for m in _stream_messages(config)] == [str(account.id)]


def test_a_relay_whose_subjects_miss_its_own_exits_non_zero_naming_them(bus, settings):
    _use(settings, dataclasses.replace(bus, subjects=[f"{bus.subject_prefix}bank.other.>"]))
    svc.open_account(holder_name="Mismatch", actor=ACTOR)
    with pytest.raises(
        CommandError,
        match=rf"do not cover \d+ subject\(s\) .*: {bus.subject_prefix}bank\.account\.\w+",
    ):
        call_command("relay_events")  # not --once: a misconfiguration is not waited out
    assert _stream_count(bus) == 0 and _relay_checkpoint(bus) == 0


async def _add_stream(url: str, name: str, subjects: list[str]) -> None:
    import nats
    from nats.js.api import StreamConfig

    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    try:
        await nc.jetstream().add_stream(StreamConfig(name=name, subjects=subjects))
    finally:
        await nc.close()


@pytest.fixture
def other_stream(bus):
    """A stream of someone else's that holds the bank subjects of ``bus``'s prefix."""
    other = dataclasses.replace(bus, stream=f"{bus.stream}_OTHER")
    asyncio.run(_add_stream(bus.url, other.stream, [f"{bus.subject_prefix}bank.>"]))
    yield other
    asyncio.run(_delete_stream(other))


def test_a_stream_the_server_refuses_is_named_with_the_reason_and_the_other_stream(
    bus, other_stream, settings
):
    _use(settings, bus)
    svc.open_account(holder_name="Overlap", actor=ACTOR)
    with pytest.raises(CommandError) as refused:
        call_command("relay_events")
    message = str(refused.value)
    assert f"NATS refused to create stream {bus.stream}" in message
    assert "subjects overlap with an existing stream" in message
    assert f"it overlaps stream {other_stream.stream} ({bus.subject_prefix}bank.>)" in message
    assert _relay_checkpoint(bus) == 0


def test_relay_events_once_gives_up_on_an_absent_broker_and_exits_non_zero(settings):
    _use(settings, _config(f"nats://127.0.0.1:{_free_port()}"))
    svc.open_account(holder_name="Nobody listens", actor=ACTOR)
    with pytest.raises(CommandError, match=r"gave up after 2 failed rounds, having published 0"):
        call_command("relay_events", "--once", "--attempts", "2", "--max-backoff", "0.01")


@pytest.mark.postgres
def test_the_relay_exits_non_zero_naming_a_refused_stream_and_a_subject_mismatch(
    bus, other_stream
):
    svc.open_account(holder_name="Exit codes", actor=ACTOR)
    overlapping = _relay_process(bus)
    out, err = overlapping.communicate(timeout=60)
    assert overlapping.returncode != 0
    assert f"overlaps stream {other_stream.stream}" in err and "stopped cleanly" not in out
    mismatched = _relay_process(
        dataclasses.replace(bus, subjects=[f"{bus.subject_prefix}nothing.>"]), "--once"
    )
    out, err = mismatched.communicate(timeout=60)
    assert mismatched.returncode != 0
    assert f"{bus.subject_prefix}bank.account.AccountOpened" in err


@pytest.mark.postgres
def test_a_relay_stopped_before_it_could_publish_says_so_and_exits_non_zero():
    config = _config(f"nats://127.0.0.1:{_free_port()}")
    svc.open_account(holder_name="Never published", actor=ACTOR)
    relay = _relay_process(config, "--max-backoff", "0.2")
    failing = threading.Event()
    lines: list[str] = []

    def read_errors():
        for line in relay.stderr:
            lines.append(line)
            if "nothing is lost, retrying" in line:
                failing.set()

    reader = threading.Thread(target=read_errors, daemon=True)
    reader.start()
    try:
        assert failing.wait(60), "the relay never reported its failure"
    finally:
        relay.send_signal(signal.SIGTERM)
        out = relay.stdout.read()
        relay.wait(30)
        reader.join(30)
    assert relay.returncode != 0
    assert "stopped before it could publish" in "".join(lines)
    assert "stopped cleanly" not in out


# --- reversals and maker-checker requests (issue 21) -----------------------------------------

MAKER = Actor(username="maker", user_id=7, auth="token")
CHECKER = Actor(username="checker", user_id=8, auth="token")


def test_the_default_subjects_cover_reversals_and_the_approval_streams(settings):
    from config import settings as defaults

    subjects = published_subjects()
    assert "bank.account.PostingReversed" in subjects
    for event_type in ("ApprovalRequested", "ApprovalGranted", "ApprovalRejected"):
        assert f"bank.approval.{event_type}" in subjects
    assert "bank.approval.ApprovalExpired" in subjects
    assert published_subjects("acme.") == [f"acme.{s}" for s in subjects]
    settings.NATS_URL = "nats://127.0.0.1:4222"
    settings.NATS_SUBJECTS = defaults.NATS_SUBJECTS  # bank.> unless NATS_SUBJECTS says else
    check_subjects(BusConfig.from_settings())  # no RelayConfigError
    settings.NATS_SUBJECTS = ["bank.account.>"]
    with pytest.raises(RelayConfigError, match=r"do not cover 4 subject\(s\).*bank\.approval\."):
        check_subjects(BusConfig.from_settings())


def test_reversals_and_approval_events_are_published_once_each_in_order(bus, settings):
    settings.APPROVAL_ALWAYS = "close"
    settings.APPROVAL_THRESHOLD_CENTS = 1_000
    a = svc.open_account(holder_name="Pub A", initial_balance_cents=5_000, actor=MAKER)
    b = svc.open_account(holder_name="Pub B", actor=MAKER)
    svc.transfer(from_account=a.id, to_account=b.id, amount_cents=300, actor=MAKER)
    sent = svc.account_events(a.id)[-1]
    reversals.reverse_posting(
        account_id=a.id, event_id=sent.event_id, reason="wrong payee", actor=MAKER
    )
    request = approvals.request(
        "withdraw",
        command={"account_id": str(a.id), "amount_cents": 2_000, "description": "car"},
        actor=MAKER,
        reason="at the desk",
    )
    approvals.approve(request.id, actor=CHECKER, note="ID seen")
    rejected = approvals.request(
        "close", command={"account_id": str(b.id), "reason": "moved"}, actor=MAKER
    )
    approvals.reject(rejected.id, actor=CHECKER, reason="not empty")
    relay = Relay(bus, batch_size=3)  # an approval's append (command + decision) comes whole
    try:
        while relay.run_once():
            pass
    finally:
        relay.shutdown()
    messages = _assert_each_event_once_in_order(bus)
    assert _relay_checkpoint(bus) == es.head_position()
    assert not _parked(bus)
    by_type = collections.defaultdict(list)
    for message in messages:
        by_type[message["subject"].removeprefix(bus.subject_prefix)].append(message)
    reversed_a, reversed_b = by_type["bank.account.PostingReversed"]
    assert {reversed_a["body"]["stream_id"], reversed_b["body"]["stream_id"]} == {
        str(a.id),
        str(b.id),
    }
    body = next(m["body"] for m in (reversed_a, reversed_b) if m["body"]["stream_id"] == str(a.id))
    assert body["data"] == {
        "reversed_event_id": str(sent.event_id),
        "reversed_version": sent.version,
        "reversed_event_type": "TransferSent",
        "amount_cents": 300,
        "balance_change_cents": 300,
        "reason": "wrong payee",
        "transfer_id": sent.data["transfer_id"],
    }
    assert body["metadata"]["actor"]["username"] == "maker"
    (requested, other_request) = by_type["bank.approval.ApprovalRequested"]
    assert requested["body"]["stream_type"] == "bank.approval"
    assert requested["body"]["stream_id"] == str(request.id)
    assert requested["body"]["data"]["kind"] == "withdraw"
    assert requested["body"]["data"]["command"]["amount_cents"] == 2_000
    assert requested["body"]["data"]["requested_by"]["username"] == "maker"
    (granted,) = by_type["bank.approval.ApprovalGranted"]
    assert granted["body"]["data"]["decided_by"]["username"] == "checker"
    assert granted["body"]["metadata"]["actor"]["username"] == "checker"
    (withdrawn,) = by_type["bank.account.MoneyWithdrawn"]
    assert withdrawn["body"]["metadata"]["approval"]["id"] == str(request.id)
    assert withdrawn["body"]["metadata"]["causation_id"] == requested["body"]["event_id"]
    # The command and its approval: one append, neighbours on the bus as in the store (in
    # the store's order over the append's streams, by stream id: either may come first).
    assert abs(granted["seq"] - withdrawn["seq"]) == 1
    (refused,) = by_type["bank.approval.ApprovalRejected"]
    assert refused["body"]["data"]["reason"] == "not empty"
    assert refused["body"]["stream_id"] == other_request["body"]["stream_id"]
