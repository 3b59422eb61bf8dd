"""The relay against a three-node JetStream cluster, one node killed mid-relay and back.

Three private ``nats-server`` processes with JetStream and routes to each other on loopback
(free ports, a store directory and a generated configuration file each); the relay runs as
``relay_events`` with ``NATS_URL`` listing the three servers and ``NATS_REPLICAS=3``, on a
stream of its own. The node the relay is connected to is killed (SIGKILL) mid-relay: the
relay reconnects to another node and goes on, the two survivors keep a quorum, and the
killed node, started again on its store, catches up. Every stored event is then in the
stream once, in global order.
"""

from __future__ import annotations

import asyncio
import collections
import json
import re
import shutil
import signal
import socket
import subprocess
import urllib.request
import uuid

import psycopg
import pytest

import eventstore as es
from bank.services import Actor
from bank.services import accounts as svc
from projections.models import Checkpoint
from tests.projections.helpers import bulk_store, wait_until
from tests.support import database_url, manage_env, require, start_manage

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
ACTOR = Actor.system("tests")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _nats_version() -> tuple[int, ...]:
    out = subprocess.run([NATS_SERVER, "--version"], capture_output=True, text=True).stdout
    found = re.search(r"v(\d+)\.(\d+)\.(\d+)", out)
    assert found, f"nats-server --version said {out!r}"
    return tuple(int(part) for part in found.groups())


class Node:
    """One cluster member: its ports, store, configuration file and process."""

    def __init__(self, name: str, directory, cluster: list[Node]) -> None:
        self.name, self.cluster = name, cluster
        self.port, self.route_port, self.monitor_port = _free_port(), _free_port(), _free_port()
        self.store = directory / f"{name}-store"
        self.config = directory / f"{name}.conf"
        self.log = directory / f"{name}.log"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def write_config(self, *, sync_always: bool) -> None:
        routes = ", ".join(
            f"nats-route://127.0.0.1:{n.route_port}" for n in self.cluster if n is not self
        )
        # sync_interval exists from NATS 2.10 (2.9 refuses the field): fsync every write.
        sync = "\n  sync_interval: always" if sync_always else ""
        self.config.write_text(
            f"server_name: {self.name}\n"
            f"listen: 127.0.0.1:{self.port}\n"
            f"http: 127.0.0.1:{self.monitor_port}\n"
            f'jetstream {{\n  store_dir: "{self.store}"{sync}\n}}\n'
            "cluster {\n"
            "  name: ledgerline-test\n"
            f"  listen: 127.0.0.1:{self.route_port}\n"
            f"  routes: [{routes}]\n"
            "}\n"
        )

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [NATS_SERVER, "-c", str(self.config)], stdout=log, stderr=subprocess.STDOUT
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)
        self.process = None

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(30)
            self.process = None

    def monitor(self, path: str) -> dict:
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.monitor_port}{path}", timeout=5
        ) as answer:
            return json.loads(answer.read())

    def has_client(self, name: str) -> bool:
        try:
            connections = self.monitor("/connz").get("connections") or []
        except OSError:
            return False
        return any(c.get("name") == name for c in connections)

    def stored_messages(self, stream: str) -> int:
        """How many messages this node's own copy of ``stream`` holds (its monitoring)."""
        try:
            jsz = self.monitor("/jsz?accounts=true&streams=true")
        except OSError:
            return -1
        for account in jsz.get("account_details") or []:
            for detail in account.get("stream_detail") or []:
                if detail["name"] == stream:
                    return detail["state"]["messages"]
        return -1


@pytest.fixture
def cluster(tmp_path):
    require(
        shutil.which("nats-server") is not None,
        "nats-server on the PATH",
        "the nats-server package (.ci/run installs it)",
    )
    nodes: list[Node] = []
    nodes.extend(Node(f"n{i}", tmp_path, nodes) for i in range(1, 4))
    sync_always = _nats_version() >= (2, 10, 0)
    for node in nodes:
        node.write_config(sync_always=sync_always)
        node.start()
    try:
        wait_until(lambda: _accepts_replicated_streams(nodes), "the cluster to elect its leaders")
        yield nodes
    finally:
        for node in nodes:
            node.stop()


def _servers(nodes: list[Node]) -> list[str]:
    return [node.url for node in nodes]


def _run(nodes: list[Node], work):
    """``work(js)`` on a connection to the cluster (any live node)."""

    async def main():
        import nats

        nc = await nats.connect(
            servers=_servers(nodes), connect_timeout=2, max_reconnect_attempts=2
        )
        try:
            return await work(nc.jetstream(timeout=10))
        finally:
            await nc.close()

    return asyncio.run(main())


def _accepts_replicated_streams(nodes: list[Node]) -> bool:
    """Whether the cluster creates a three-replica stream (its meta leader is elected and
    every peer is known); the probe stream is deleted again."""
    from nats.js.api import StreamConfig

    name = f"PROBE_{uuid.uuid4().hex[:8]}"

    async def probe(js):
        await js.add_stream(StreamConfig(name=name, subjects=[f"{name}.x"], num_replicas=3))
        await js.delete_stream(name)

    try:
        _run(nodes, probe)
    except Exception:  # noqa: BLE001 - not ready yet: nats-py's errors share no base
        return False
    return True


def _stream_info(nodes: list[Node], stream: str):
    async def info(js):
        return await js.stream_info(stream)

    try:
        return _run(nodes, info)
    except Exception:  # noqa: BLE001 - not created yet, or a leader is being elected
        return None


def _stream_count(nodes: list[Node], stream: str) -> int:
    info = _stream_info(nodes, stream)
    return info.state.messages if info else 0


def _all_replicas_current(nodes: list[Node], stream: str) -> bool:
    info = _stream_info(nodes, stream)
    if info is None or info.cluster is None or info.cluster.leader is None:
        return False
    replicas = info.cluster.replicas or []
    return len(replicas) == 2 and all(r.current and not r.offline for r in replicas)


def _messages(nodes: list[Node], stream: str, subject: str) -> list[dict]:
    """Every message of the stream in stream order, as a new consumer receives them."""

    async def read(js):
        consumer = await js.pull_subscribe(subject, stream=stream, durable=None)
        total = (await js.stream_info(stream)).state.messages
        messages = []
        while len(messages) < total:
            for msg in await consumer.fetch(batch=1000, timeout=10):
                messages.append({"id": msg.headers["Nats-Msg-Id"], "body": json.loads(msg.data)})
                await msg.ack()
        return messages

    return _run(nodes, read)


def _all_events() -> list[es.RecordedEvent]:
    events, position = [], 0
    while batch := es.read_all(after_position=position, limit=5000):
        events += batch
        position = batch[-1].position
    return events


def _relay_checkpoint(stream: str) -> int:
    row = Checkpoint.objects.filter(name=f"relay:{stream}").first()
    return row.position if row else 0


def test_a_cluster_node_killed_mid_relay_loses_nothing_and_duplicates_nothing(cluster):
    tag = uuid.uuid4().hex[:10]
    stream, prefix = f"CLUSTER_{tag}", f"c{tag}."
    bulk_store(accounts=20, deposits_each=999)  # 20,000 events
    head = es.head_position()
    # The relay moves its checkpoint under a row lock after JetStream acknowledged a batch.
    # Holding that row (from another session) until the node is killed keeps the relay
    # mid-relay however fast it publishes and however slowly this test finds its node:
    # it publishes its first batch, then waits for the row.
    Checkpoint.objects.create(name=f"relay:{stream}", position=0)
    holder = psycopg.connect(database_url())
    holder.execute(
        "SELECT 1 FROM projection_checkpoints WHERE name = %s FOR UPDATE", [f"relay:{stream}"]
    )
    relay = start_manage(
        manage_env(
            database_url(),
            NATS_URL=",".join(_servers(cluster)),
            NATS_REPLICAS="3",
            NATS_STREAM=stream,
            NATS_SUBJECT_PREFIX=prefix,
            NATS_SUBJECTS=f"{prefix}>",
            NATS_DUPLICATE_WINDOW_SECONDS="600",
        ),
        "relay_events",
        "--batch-size",
        "100",
        "--poll-interval",
        "0.1",
        "--max-backoff",
        "0.5",
    )
    killed = None
    try:
        wait_until(lambda: _stream_count(cluster, stream) > 0, "the relay to publish")
        # The node the relay is connected to: its connection breaks, so the relay must find
        # another node; the stream keeps a quorum of two.
        wait_until(
            lambda: any(n.has_client("ledgerline-relay") for n in cluster),
            "the relay's connection to show in a node's monitoring",
        )
        killed = next(n for n in cluster if n.has_client("ledgerline-relay"))
        killed.kill()
        assert _relay_checkpoint(stream) < head, "the node was not killed mid-relay"
        holder.rollback()  # the relay moves its checkpoint, then finds its node gone
        survivors = [n for n in cluster if n is not killed]
        wait_until(
            lambda: _relay_checkpoint(stream) == head,
            "the relay to publish everything through the two survivors",
            timeout=300,
        )
        assert any(n.has_client("ledgerline-relay") for n in survivors)
        # Back on its store, the killed node catches up; the relay goes on meanwhile.
        killed.start()
        account = svc.open_account(holder_name="After the node came back", actor=ACTOR)
        for amount in (1, 2, 3):
            svc.deposit(account_id=account.id, amount_cents=amount, actor=ACTOR)
        wait_until(lambda: _relay_checkpoint(stream) == es.head_position(), "the relay to go on")
        stored = _all_events()
        wait_until(
            lambda: (
                _all_replicas_current(cluster, stream)
                and killed.stored_messages(stream) == len(stored)
            ),
            "the restarted node to hold every message again",
            timeout=300,
        )
    finally:
        holder.close()  # released already, unless the test failed before the kill
        relay.send_signal(signal.SIGTERM)
        out, err = relay.communicate(timeout=60)
    assert relay.returncode == 0, err
    assert "stopped cleanly" in out
    assert "nothing is lost" in err  # it noticed the broken connection and carried on

    messages = _messages(cluster, stream, f"{prefix}>")
    per_event = collections.Counter(m["id"] for m in messages)
    assert [event_id for event_id, n in per_event.items() if n > 1] == []  # no duplicate
    assert [m["id"] for m in messages] == [str(e.event_id) for e in stored]  # none lost, in order
    for message in messages:
        assert message["body"]["event_id"] == message["id"]
