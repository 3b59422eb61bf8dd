"""Event bus relay throughput on PostgreSQL and NATS JetStream (issue 9's benchmark).

1. A store of 100,000+ events (1,000 accounts of 100 events, plus transfers).
2. Reading every event in global order with raw psycopg (server-side cursor): the baseline.
3. The relay publishing the whole store to a fresh JetStream stream, every event
   acknowledged by JetStream and every checkpoint committed: events/s, as a ratio to (2).

Needs NATS with JetStream at ``NATS_URL`` (default nats://127.0.0.1:4222); the benchmark's
stream is deleted at the end.

Run: ``make bench`` or ``.venv/bin/python bench/relay_bench.py [--accounts N] [--batch-size N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid

from common import BENCH_DB, recreate_database, setup_django
from projection_bench import build_store, raw_read

NATS_URL = os.environ.get("NATS_URL") or "nats://127.0.0.1:4222"


async def _stream_state(url: str, stream: str, delete: bool = False) -> int:
    import nats

    nc = await nats.connect(url, connect_timeout=2, allow_reconnect=False)
    try:
        js = nc.jetstream()
        count = (await js.stream_info(stream)).state.messages
        if delete:
            await js.delete_stream(stream)
        return count
    finally:
        await nc.close()


def relay_all(batch_size: int) -> tuple[int, float, int]:
    """Publish the whole store; return (events, seconds, messages in the stream)."""
    from projections.relay import BusConfig, Relay

    tag = uuid.uuid4().hex[:8]
    config = BusConfig.from_settings(
        url=NATS_URL,
        stream=f"BENCH_{tag}",
        subjects=[f"bench{tag}.>"],
        subject_prefix=f"bench{tag}.",
    )
    relay = Relay(config, batch_size=batch_size)
    try:
        relay.connect()
        relay.checkpoint()
        published = 0
        t0 = time.perf_counter()
        while count := relay.run_once():
            published += count
        seconds = time.perf_counter() - t0
    finally:
        relay.shutdown()
    stored = asyncio.run(_stream_state(NATS_URL, config.stream, delete=True))
    return published, seconds, stored


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--accounts", type=int, default=1000)
    parser.add_argument("--events-each", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=1000)
    args = parser.parse_args()
    url = recreate_database(BENCH_DB)
    setup_django(url)
    from django.db import connection

    print(f"building a store of {args.accounts * args.events_each:,}+ events ...", flush=True)
    total = build_store(args.accounts, args.events_each)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    count, raw_seconds = raw_read(url)
    assert count == total
    published, seconds, stored = relay_all(args.batch_size)
    assert published == total == stored, (published, total, stored)
    raw_rate, rate = total / raw_seconds, total / seconds
    print(f"\nStore: {total:,} events; relay batches of {args.batch_size}")
    print(f"{'workload':<52} {'events/s':>10} {'seconds':>8}")
    print(f"{'raw psycopg read in global order':<52} {raw_rate:>10,.0f} {raw_seconds:>8.2f}")
    print(f"{'relay: published, acknowledged, checkpointed':<52} {rate:>10,.0f} {seconds:>8.2f}")
    print(f"relay / raw read: {rate / raw_rate:.3f}x")


if __name__ == "__main__":
    main()
