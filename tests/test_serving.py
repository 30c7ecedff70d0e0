"""Serving: the SQLite store and the API over real HTTP on loopback (the batch pipeline: tests/test_pipeline.py)."""

from __future__ import annotations

import sqlite3
import threading

import httpx
import pandas as pd
import pytest
from serving_fixtures import ITEMS, USERS, K, any_lists, make_store

from recsys_tutorial.serving import RecommendationStore
from recsys_tutorial.serving.load import load_test
from recsys_tutorial.serving.server import ApiServer

# ---------------------------------------------------------------- store


def test_refresh_rolls_back_on_error_and_keeps_the_old_lists(tmp_path):
    store = make_store(tmp_path / "rec.sqlite")
    before = store.recommendations(1, "pop", "any", K)
    broken = pd.concat([any_lists(first=12), any_lists(first=12).head(1)])  # a duplicated (user, rank)
    with pytest.raises(sqlite3.IntegrityError):
        store.refresh("pop", broken, k=K)
    assert store.recommendations(1, "pop", "any", K) == before
    assert store.recommendations(1, "ctx", "morning", K)  # other models untouched


def test_store_reads_lists_items_and_models(tmp_path):
    store = make_store(tmp_path / "rec.sqlite")
    rows = store.recommendations(2, "ctx", "evening", 3)
    assert [r["rank"] for r in rows] == [1, 2, 3]
    assert [r["item"] for r in rows] == [13, 14, 15]  # user 2: evening items 11-15 shifted by 2
    assert rows[0]["title"] == "Film 13" and rows[0]["genres"] == ["Drama"]
    assert store.models()["ctx"]["contexts"] == ["evening", "morning"]
    assert store.users("pop") == list(USERS)
    assert store.item(3) == {"item": 3, "title": "Film 3", "year": 1993, "genres": ["Drama"]}
    assert store.item(999) is None
    with pytest.raises(ValueError, match="lack column"):
        store.refresh("pop", any_lists().drop(columns="score"), k=K)


# ---------------------------------------------------------------- API over real HTTP


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    path = tmp_path_factory.mktemp("serving") / "rec.sqlite"
    make_store(path)
    with ApiServer(path) as running:
        yield running
    assert not running.running


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        yield c


def test_health_and_models(client):
    assert client.get("/health").json() == {"status": "ok", "models": ["ctx", "pop"], "n_items": len(ITEMS)}
    assert client.get("/models").json()["pop"]["k"] == K


def test_recommendations_follow_the_context(client):
    morning = client.get("/users/1/recommendations", params={"model": "ctx", "context": "morning", "k": 3}).json()
    evening = client.get("/users/1/recommendations", params={"model": "ctx", "context": "evening", "k": 3}).json()
    assert [it["item"] for it in morning["items"]] == [2, 3, 4]
    assert [it["item"] for it in evening["items"]] == [12, 13, 14]
    assert morning["items"][0]["title"] == "Film 2" and morning["context"] == "morning"


def test_context_free_model_serves_its_one_list_at_any_time(client):
    body = client.get("/users/3/recommendations", params={"model": "pop", "context": "evening"}).json()
    assert body["context"] == "any"
    assert [it["item"] for it in body["items"]] == [6, 7, 8, 9, 10]


def test_no_page_loads_scripts_from_a_cdn(client):
    assert "<script src" not in client.get("/").text
    assert client.get("/docs").status_code == 404  # FastAPI's docs page would fetch its scripts from a CDN
    assert "/users/{user}/recommendations" in client.get("/openapi.json").json()["paths"]


def test_item_details(client):
    assert client.get("/items/4").json()["genres"] == ["Comedy", "Romance"]


BAD_INPUTS = [
    ("/users/1/recommendations?model=ctx&context=morning&k=-1", 422, "k: Input should be greater than or equal to 1"),
    ("/users/1/recommendations?model=ctx&context=morning&k=0", 422, "greater than or equal to 1"),
    ("/users/1/recommendations?model=ctx&context=morning&k=1000000000", 422, "less than or equal to 100"),
    ("/users/1/recommendations?model=ctx&context=morning&k=50", 422, "k=50 exceeds the 5 items stored per list"),
    ("/users/1/recommendations?model=ctx&context=morning&k=ten", 422, "k: Input should be a valid integer"),
    ("/users/999/recommendations?model=ctx&context=morning", 404, "unknown user 999"),
    ("/users/-1/recommendations?model=ctx&context=morning", 422, "user: Input should be greater than or equal to 0"),
    ("/users/1/recommendations?model=ctx&context=brunch", 422, "context: Input should be 'night', 'morning'"),
    ("/users/1/recommendations?model=ctx", 422, "keeps one list per time of day: pass context="),
    ("/users/1/recommendations?model=ctx&context=night", 422, "has no lists for context 'night'"),
    ("/users/1/recommendations?model=nope&context=morning", 422, "unknown model 'nope'"),
    ("/users/1/recommendations?model=ctx'; DROP TABLE recommendations;--", 422, "unknown model"),
    ("/users/1/recommendations?model=pop' OR '1'='1", 422, "unknown model"),
    ("/users/1/recommendations?model=pop&context=morning' OR 1=1--", 422, "context: Input should be"),
    ("/users/1 OR 1=1/recommendations?model=pop", 422, "user: Input should be a valid integer"),
    ("/users/1;DELETE FROM items/recommendations?model=pop", 422, "user: Input should be a valid integer"),
    ("/items/0", 404, "unknown item 0"),
    ("/items/1' OR '1'='1", 422, "item: Input should be a valid integer"),
    ("/users?model=" + "x" * 65, 422, "model: String should have at most 64 characters"),
]


@pytest.mark.parametrize("path, status, message", BAD_INPUTS)
def test_bad_inputs_get_a_clear_status_and_message(client, path, status, message):
    response = client.get(path)
    assert response.status_code == status, response.text
    assert message in response.json()["detail"]


def test_sql_looking_inputs_change_nothing(client):
    for path, _, _ in BAD_INPUTS:
        client.get(path)
    assert client.get("/health").json()["n_items"] == len(ITEMS)
    assert len(client.get("/users/2/recommendations", params={"model": "pop"}).json()["items"]) == K


def test_readers_never_see_a_half_refreshed_list(server, client):
    """Bounded: 4 reader threads x 150 requests over HTTP while the 'pop' lists are replaced 20 times."""
    versions = {6: any_lists(first=6), 14: any_lists(first=14)}
    expected = {first: list(range(first, first + K)) for first in versions}
    problems = []

    def read(user: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10) as c:
            for _ in range(150):
                response = c.get(f"/users/{user}/recommendations", params={"model": "pop"})
                if response.status_code != 200:
                    problems.append(f"status {response.status_code}: {response.text}")
                    continue
                items = response.json()["items"]
                if [it["rank"] for it in items] != list(range(1, K + 1)):
                    problems.append(f"ranks {[it['rank'] for it in items]}")
                if [it["item"] for it in items] not in expected.values():
                    problems.append(f"mixed list {[it['item'] for it in items]}")

    writer_store = RecommendationStore(server.db_path)
    readers = [threading.Thread(target=read, args=(USERS[i % len(USERS)],)) for i in range(4)]
    for t in readers:
        t.start()
    refreshes = 0
    while any(t.is_alive() for t in readers) and refreshes < 20:
        writer_store.refresh("pop", versions[14 if refreshes % 2 == 0 else 6], k=K)
        refreshes += 1
    for t in readers:
        t.join(timeout=60)
    writer_store.refresh("pop", versions[6], k=K)  # leave the fixture as it was
    assert refreshes >= 2
    assert problems == []
    counts = sqlite3.connect(server.db_path).execute(
        "SELECT COUNT(*), COUNT(DISTINCT user || '/' || rank) FROM recommendations WHERE model = 'pop'"
    )
    assert counts.fetchone() == (len(USERS) * K, len(USERS) * K)  # no lost or duplicated rows


def test_small_bounded_load_has_no_errors(server):
    result = load_test(server.url, ["/users/1/recommendations?model=pop"], rate=100, duration_s=1, max_requests=100)
    assert result.errors == 0 and len(result.latency_ms) == 100


def test_load_test_refuses_other_hosts():
    with pytest.raises(ValueError, match="loopback only"):
        load_test("http://example.com", ["/health"])
