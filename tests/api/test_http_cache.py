"""A real HTTP client cache in front of a live server keeps nothing of the API's answers.

CacheControl (requests' RFC 9111 cache) stores any answer that carries an ETag, for
revalidation, unless the answer says ``no-store``: without it, every account read would
land in the cache directory on the client's disk.
"""

from __future__ import annotations

import cachecontrol
import pytest
import requests
from cachecontrol.caches.file_cache import FileCache
from django.contrib.auth.models import Group, User
from rest_framework.authtoken.models import Token

from tests.support import ensure_roles

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def session(live_server, tmp_path, transactional_db):
    ensure_roles()
    user = User.objects.create_user("cache-teller")
    user.groups.add(Group.objects.get(name="tellers"))
    token = Token.objects.create(user=user).key
    cached = cachecontrol.CacheControl(requests.Session(), cache=FileCache(tmp_path / "cache"))
    cached.headers["Authorization"] = f"Token {token}"
    yield cached, live_server.url, tmp_path / "cache"
    cached.close()


def stored(directory):
    return [p for p in directory.rglob("*") if p.is_file()] if directory.exists() else []


def test_an_http_cache_stores_no_answer_and_every_read_is_fresh(session):
    http, base, directory = session
    opened = http.post(
        f"{base}/api/accounts/", json={"holder_name": "Cached", "initial_balance_cents": 10}
    )
    assert opened.status_code == 201
    url = f"{base}/api/accounts/{opened.json()['id']}/"
    first = http.get(url)
    assert first.status_code == 200 and first.headers["ETag"] == '"1"'
    assert first.headers["Cache-Control"] == "no-store"
    assert {"Authorization", "Cookie"} <= {v.strip() for v in first.headers["Vary"].split(",")}
    assert http.post(f"{url}deposit/", json={"amount_cents": 5}).status_code == 200
    second = http.get(url)
    assert not getattr(second, "from_cache", False)
    assert second.json()["balance_cents"] == 15 and second.headers["ETag"] == '"2"'
    past = http.get(url, params={"as_of_version": 1})
    assert past.json()["balance_cents"] == 10 and not getattr(past, "from_cache", False)
    for path in ("/api/accounts/", f"{url}events/", f"{url}transactions/"):
        assert http.get(path if path.startswith("http") else base + path).status_code == 200
    assert (
        http.get(f"{base}/api/accounts/00000000-0000-0000-0000-000000000000/").status_code == 404
    )
    assert stored(directory) == []


def test_a_client_revalidating_with_the_etag_gets_304_and_no_body(session):
    http, base, _ = session
    opened = http.post(f"{base}/api/accounts/", json={"holder_name": "Revalidated"}).json()
    url = f"{base}/api/accounts/{opened['id']}/"
    etag = http.get(url).headers["ETag"]
    again = http.get(url, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["ETag"] == etag and again.headers["Cache-Control"] == "no-store"
