"""load_interactions / load_dataset: any interaction log as the MovieLens-shaped frame, bad input named and fixed."""

from __future__ import annotations

import gzip
import sys

import numpy as np
import pandas as pd
import pytest

from recsys_tutorial.data import (
    Dataset,
    MovieLens,
    add_context,
    k_core_filter,
    load_dataset,
    load_interactions,
    load_movielens,
)
from recsys_tutorial.data.interactions import KCoreReport, LoadReport

# Three users, four items, in time order; UNIX seconds one minute apart, 2023-11-14 22:13:20 UTC onwards.
USERS = [1, 1, 1, 2, 2, 2, 3, 3, 3, 3]
ITEMS = [10, 11, 12, 10, 12, 13, 11, 12, 13, 10]
STARS = [5, 3, 4, 2, 5, 1, 4, 4, 3, 5]
UNIX = [1_700_000_000 + 60 * i for i in range(10)]


def _expected(ratings=STARS, unix=UNIX) -> pd.DataFrame:
    """The frame load_movielens would build from these values (its exact dtypes)."""
    return pd.DataFrame(
        {
            "user_id": pd.Series(USERS, dtype="int64"),
            "item_id": pd.Series(ITEMS, dtype="int64"),
            "rating": pd.Series(ratings, dtype="float32"),
            "timestamp": pd.to_datetime(pd.Series(unix, dtype="int64"), unit="s", utc=True),
        }
    )


def _same(frame: pd.DataFrame, expected: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(frame, expected)


def test_csv_tsv_parquet_and_dataframe_give_the_movielens_frame(tmp_path):
    pytest.importorskip("pyarrow")
    times = pd.to_datetime(pd.Series(UNIX), unit="s", utc=True)
    # Each source writes the times its own way: UNIX seconds, ISO 8601 with Z, zoned datetimes, naive datetimes.
    pd.DataFrame({"uid": USERS, "iid": ITEMS, "stars": STARS, "t": UNIX}).to_csv(tmp_path / "log.csv", index=False)
    iso = times.dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    pd.DataFrame({"uid": USERS, "iid": ITEMS, "stars": STARS, "t": iso}).to_csv(
        tmp_path / "log.tsv", sep="\t", index=False
    )
    paris = times.dt.tz_convert("Europe/Paris")
    pd.DataFrame({"uid": USERS, "iid": ITEMS, "stars": STARS, "t": paris}).to_parquet(tmp_path / "log.parquet")
    frame = pd.DataFrame({"uid": USERS, "iid": ITEMS, "stars": STARS, "t": times.dt.tz_localize(None)})
    columns = dict(user="uid", item="iid", rating="stars", timestamp="t")
    for source in (tmp_path / "log.csv", tmp_path / "log.tsv", tmp_path / "log.parquet", frame):
        _same(load_interactions(source, **columns), _expected())


def test_the_frame_has_the_dtypes_of_load_movielens(ml100k_dir):
    ours = load_interactions(pd.DataFrame({"user_id": USERS, "item_id": ITEMS, "rating": STARS, "t": UNIX}),
                             timestamp="t", rating="rating")  # fmt: skip
    theirs = load_movielens("100k", root=ml100k_dir.parent).ratings
    assert list(ours.columns) == list(theirs.columns)
    assert ours.dtypes.equals(theirs.dtypes)


def test_user_item_lines_csv_tsv_parquet_and_dataframe_agree_without_times(tmp_path):
    pytest.importorskip("pyarrow")
    lines = "".join(f"{u} {i}\n" for u, i in zip(USERS, ITEMS, strict=True))
    (tmp_path / "seq.txt").write_text(lines)
    pairs = pd.DataFrame({"user_id": USERS, "item_id": ITEMS})
    pairs.to_csv(tmp_path / "pairs.csv", index=False)
    pairs.to_csv(tmp_path / "pairs.tsv", sep="\t", index=False)
    pairs.to_parquet(tmp_path / "pairs.parquet")
    # Implicit feedback: every rating 1.0; times made from row order, 2000-01-01 UTC + i seconds.
    made_up = [946_684_800 + i for i in range(len(USERS))]
    expected = _expected(ratings=[1.0] * len(USERS), unix=made_up)
    _same(load_interactions(tmp_path / "seq.txt", format="user-item"), expected)
    for source in (tmp_path / "pairs.csv", tmp_path / "pairs.tsv", tmp_path / "pairs.parquet", pairs):
        _same(load_interactions(source), expected)
    report = load_interactions(tmp_path / "seq.txt", format="user-item").attrs["report"]
    assert report.synthetic_timestamps and "synthesised from row order" in report.timestamps
    assert "implicit" in report.ratings


def test_text_ids_stay_text_and_integer_text_becomes_int64(tmp_path):
    (tmp_path / "seq.txt").write_text("007 a\n007 b\n007 c\n7 a\n7 b\n7 c\n")
    frame = load_interactions(tmp_path / "seq.txt", format="user-item")
    assert frame["user_id"].tolist() == ["007", "007", "007", "7", "7", "7"]  # "007" is a name, not 7
    assert frame["item_id"].tolist() == ["a", "b", "c", "a", "b", "c"]
    numeric = load_interactions(pd.DataFrame({"user_id": ["5"] * 3, "item_id": ["1", "2", "3"]}))
    assert numeric["user_id"].dtype == "int64" and numeric["item_id"].tolist() == [1, 2, 3]


def _random_log(seed: int = 0, n_users: int = 40, n_items: int = 25) -> pd.DataFrame:
    """Integer-id log: each user rates 4-12 distinct items, popularity skewed, all times distinct."""
    rng = np.random.default_rng(seed)
    popularity = rng.dirichlet(np.full(n_items, 0.5))
    rows = [
        (u, i) for u in range(n_users) for i in rng.choice(n_items, rng.integers(4, 13), replace=False, p=popularity)
    ]
    users, items = np.array(rows).T
    unix = 1_600_000_000 + rng.permutation(len(rows)) * 37
    return pd.DataFrame({"user": users, "item": items, "when": unix})


def _metrics(frame: pd.DataFrame) -> tuple[dict, pd.DataFrame]:
    from recsys_tutorial.evaluation import evaluate_ranking
    from recsys_tutorial.models import MostPopular
    from recsys_tutorial.splits import encode_ids, seen_items, temporal_leave_one_out

    encoded, users, items = encode_ids(frame)
    split = temporal_leave_one_out(encoded)
    model = MostPopular().fit(split.train, n_users=len(users), n_items=len(items))
    exclude = seen_items(pd.concat([split.train, split.valid]), len(users), len(items))
    return evaluate_ranking(model.score, split.test, exclude), encoded


def test_string_ids_give_the_same_metrics_as_their_integer_twin(tmp_path):
    log = _random_log()
    # Zero-padded names sort like the integers, so both encodings (and popularity ties) line up.
    twin = pd.DataFrame(
        {
            "customer": [f"cust-{u:03d}" for u in log["user"]],
            "sku": [f"SKU{i:04d}" for i in log["item"]],
            "when": pd.to_datetime(log["when"], unit="s", utc=True).dt.strftime("%Y-%m-%d %H:%M:%S"),
        }
    )
    twin.to_csv(tmp_path / "shop.csv", index=False)
    texts = load_interactions(tmp_path / "shop.csv", user="customer", item="sku", timestamp="when")
    numbers = load_interactions(log, user="user", item="item", timestamp="when")
    assert texts["user_id"].iloc[0].startswith("cust-") and numbers["user_id"].dtype == "int64"
    ours, encoded_text = _metrics(texts)
    theirs, encoded_int = _metrics(numbers)
    np.testing.assert_array_equal(encoded_text[["user", "item"]], encoded_int[["user", "item"]])
    assert ours == theirs
    assert 0 < ours["HR@10"] < 1  # a real ranking, not a degenerate one


# Hand-made log for k = 2: D and the items z, w go in pass 1; that leaves C with one row, gone in pass 2.
K_CORE_LOG = pd.DataFrame(
    {
        "user_id": ["A", "A", "B", "B", "C", "C", "D"],
        "item_id": ["x", "y", "x", "y", "x", "z", "w"],
    }
)


def test_k_core_matches_the_hand_computed_core():
    kept, report = k_core_filter(K_CORE_LOG, 2)
    assert kept.index.tolist() == [0, 1, 2, 3]  # A-x, A-y, B-x, B-y
    assert report == KCoreReport(k=2, iterations=2, users_removed=2, items_removed=2, rows_removed=3)


def test_k_core_through_the_loader_is_reported_and_printed(capsys):
    frame = load_interactions(K_CORE_LOG, k_core=2, short_users="keep", verbose=True)
    assert frame[["user_id", "item_id"]].values.tolist() == [["A", "x"], ["A", "y"], ["B", "x"], ["B", "y"]]
    report = frame.attrs["report"]
    assert isinstance(report, LoadReport)
    assert report.k_core == KCoreReport(k=2, iterations=2, users_removed=2, items_removed=2, rows_removed=3)
    assert (report.rows_read, report.rows, report.users, report.items) == (7, 4, 2, 2)
    printed = capsys.readouterr().out
    assert "2-core: removed 2 users, 2 items and 3 rows in 2 iteration(s)" in printed


def test_a_log_that_already_is_a_k_core_loses_nothing():
    kept, report = k_core_filter(K_CORE_LOG.iloc[:4], 2)
    assert len(kept) == 4 and report == KCoreReport(2, 0, 0, 0, 0)


def _csv(tmp_path, text: str, name: str = "log.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


# Each case: (file text or DataFrame, load_interactions options, words the message must contain).
BAD_INPUT = {
    "misnamed columns": (
        "userId,movieId,rating\n1,10,4\n",
        {},
        ["'user_id'", "did you mean 'userId'", "user='userId'", "item='movieId'", "Columns are"],
    ),
    "header-less file": ("1,10\n1,11\n", {}, ["no column 'user_id'", "names=[...]", "format='user-item'"]),
    "null ids": (
        pd.DataFrame({"user_id": [1, 1, None, 2, None], "item_id": [1, 2, 3, 4, 5]}),
        {},
        ["2 null user", "'user_id'", "rows 2, 4", "dropna"],
    ),
    "unreadable timestamps": (
        "user_id,item_id,t\n1,10,2024-01-01T10:00:00\n1,11,yesterday\n1,12,2024-01-03\n",
        {"timestamp": "t"},
        ["1 timestamp(s)", "'t'", "row 1 (0-based", "'yesterday'", "UNIX seconds", "ISO 8601", "read as UTC", "tz="],
    ),
    "milliseconds read as seconds": (
        "user_id,item_id,t\n1,10,1700000000000\n1,11,1700000060000\n1,12,1700000120000\n",
        {"timestamp": "t"},
        ["after 2200", "timestamp_unit='ms'"],
    ),
    "non-numeric ratings": (
        "user_id,item_id,r\n1,10,4\n1,11,five\n1,12,3\n",
        {"rating": "r"},
        ["non-numeric rating", "'r'", "row 1 (0-based", "'five'", "rating=None"],
    ),
    "duplicate rows": (
        "user_id,item_id,t\n1,10,100\n1,10,100\n1,11,200\n1,10,100\n2,10,100\n",
        {"timestamp": "t"},
        ["2 duplicate row(s)", "user, item and timestamp", "1 group(s)", "rows 1, 3", "duplicates='drop'"],
    ),
    "short users": (
        "user_id,item_id\na,1\na,2\na,3\nb,1\nb,2\nc,1\nd,4\n",
        {},
        ["3 user(s) have fewer than 3", "2 with 1, 1 with 2", "short_users='drop'", "(4 rows)", "short_users='keep'"],
    ),
    "empty file": ("user_id,item_id\n", {}, ["has no rows"]),
    "nothing left after the k-core": (
        "user_id,item_id\na,1\na,2\na,3\nb,1\n",
        {"k_core": 3},
        ["no interactions left after the 3-core", "removed 2 users"],
    ),
    "unknown policy": ("user_id,item_id\na,1\n", {"duplicates": "remove"}, ["duplicates='remove'", "'drop'"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_names_the_problem_and_the_fix(case, tmp_path):
    source, options, words = BAD_INPUT[case]
    source = source if isinstance(source, pd.DataFrame) else _csv(tmp_path, source)
    with pytest.raises(ValueError) as err:
        load_interactions(source, **options)
    for word in words:
        assert word in str(err.value), f"{word!r} missing from: {err.value}"


def test_user_item_lines_with_three_fields_are_refused(tmp_path):
    with pytest.raises(ValueError, match="exactly two"):
        load_interactions(_csv(tmp_path, "1 10 5\n1 11 3\n", "seq.txt"), format="user-item")
    with pytest.raises(ValueError, match="only a user and an item"):
        load_interactions(_csv(tmp_path, "1 10\n", "seq.txt"), format="user-item", timestamp="t")


def test_duplicates_are_dropped_or_kept_only_when_asked(tmp_path):
    path = _csv(tmp_path, "user_id,item_id,t,r\n1,10,100,4\n1,10,100,2\n1,11,200,3\n1,12,300,5\n")
    dropped = load_interactions(path, timestamp="t", rating="r", duplicates="drop")
    assert dropped["rating"].tolist() == [4.0, 3.0, 5.0]  # the first of the group survives
    assert (dropped.attrs["report"].duplicates, dropped.attrs["report"].duplicates_dropped) == (1, 1)
    kept = load_interactions(path, timestamp="t", rating="r", duplicates="keep")
    assert len(kept) == 4 and (kept.attrs["report"].duplicates, kept.attrs["report"].duplicates_dropped) == (1, 0)


def test_without_timestamps_a_repeated_pair_is_a_duplicate(tmp_path):
    path = _csv(tmp_path, "1 10\n1 11\n1 10\n1 12\n", "seq.txt")
    with pytest.raises(ValueError, match="user and item \\(without timestamps"):
        load_interactions(path, format="user-item")
    assert len(load_interactions(path, format="user-item", duplicates="keep")) == 4


def test_short_users_are_dropped_or_kept_only_when_asked():
    log = pd.DataFrame({"user_id": ["a", "a", "a", "b", "b"], "item_id": [1, 2, 3, 1, 2]})
    dropped = load_interactions(log, short_users="drop")
    assert dropped["user_id"].unique().tolist() == ["a"]
    assert (dropped.attrs["report"].short_users, dropped.attrs["report"].short_users_dropped) == (1, 1)
    assert len(load_interactions(log, short_users="keep")) == 5


def test_naive_times_are_utc_unless_tz_is_given():
    log = pd.DataFrame({"user_id": [1, 1, 1], "item_id": [1, 2, 3], "t": ["2024-03-01 18:30"] * 3})
    utc = load_interactions(log, timestamp="t", duplicates="keep")
    assert utc["timestamp"].iloc[0] == pd.Timestamp("2024-03-01 18:30", tz="UTC")
    paris = load_interactions(log, timestamp="t", tz="Europe/Paris", duplicates="keep")
    assert paris["timestamp"].iloc[0] == pd.Timestamp("2024-03-01 17:30", tz="UTC")
    zoned = log.assign(t="2024-03-01T18:30:00+02:00")
    assert load_interactions(zoned, timestamp="t", duplicates="keep")["timestamp"].iloc[0] == pd.Timestamp(
        "2024-03-01 16:30", tz="UTC"
    )


def test_times_that_do_not_exist_in_tz_are_reported():
    log = pd.DataFrame({"user_id": [1, 1, 1], "item_id": [1, 2, 3], "t": ["2024-03-31 01:30", "2024-03-31 02:30",
                                                                         "2024-03-31 03:30"]})  # fmt: skip
    with pytest.raises(ValueError, match="daylight-saving") as err:
        load_interactions(log, timestamp="t", tz="Europe/Paris")
    assert "row 1 " in str(err.value)


def test_mixed_zones_with_tz_are_refused():
    log = pd.DataFrame({"user_id": [1, 1, 1], "item_id": [1, 2, 3],
                        "t": ["2024-03-01 10:00", "2024-03-01T10:00:00+02:00", "2024-03-01T10:00:00Z"]})  # fmt: skip
    with pytest.raises(ValueError, match="mix time zones"):
        load_interactions(log, timestamp="t", tz="Europe/Paris")


def test_context_is_kept_raw_and_add_context_runs_on_made_up_times():
    log = pd.DataFrame({"user_id": [1, 1, 1], "item_id": [1, 2, 3], "where": ["home", "work", "home"]})
    frame = load_interactions(log, context="where")
    assert frame["context"].tolist() == ["home", "work", "home"]
    frame["context_id"], contexts = pd.factorize(frame["context"], sort=True)  # the documented encoding
    assert frame["context_id"].tolist() == [0, 1, 0] and list(contexts) == ["home", "work"]
    assert "context_id" in add_context(frame.drop(columns="context_id"))


def test_compressed_csv_is_sniffed(tmp_path):
    path = tmp_path / "log.csv.gz"
    with gzip.open(path, "wt") as f:
        f.write("u;i;t\n1;10;1700000000\n1;11;1700000060\n1;12;1700000120\n")
    frame = load_interactions(path, user="u", item="i", timestamp="t")
    assert frame["item_id"].tolist() == [10, 11, 12]


def test_parquet_without_pyarrow_says_how_to_install(tmp_path, monkeypatch):
    (tmp_path / "log.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # makes `import pyarrow.parquet` fail
    with pytest.raises(ImportError, match=r"recsys-tutorial\[parquet\]"):
        load_interactions(tmp_path / "log.parquet")


def test_load_dataset_ml100k_is_movielens_with_metadata(ml100k_dir, no_network):
    data = load_dataset("ml-100k", root=ml100k_dir.parent)
    assert isinstance(data, MovieLens) and isinstance(data, Dataset)
    assert data.name == "ml-100k" and (data.n_users, data.n_items) == (943, 1682)
    _same(data.ratings, load_movielens("100k", root=ml100k_dir.parent).ratings)
    assert data.items is not None and data.users is not None
    assert (data.report.rows_read, data.report.duplicates, data.report.short_users) == (100_000, 0, 0)
    assert str(data.report).startswith("read 100,000 rows from ml-100k\n")
    core = load_dataset("ml-100k", root=ml100k_dir.parent, k_core=10).report
    assert core.k_core.users_removed == 943 - core.users and core.rows == 100_000 - core.k_core.rows_removed


def test_load_dataset_on_a_path_has_no_metadata(tmp_path):
    path = _csv(tmp_path, "user_id,item_id\n1,10\n1,11\n1,12\n", "my_shop.v2.csv")
    data = load_dataset(path)
    assert type(data) is Dataset and data.name == "my_shop.v2"
    assert data.items is None and data.users is None and len(data.ratings) == 3


def test_load_dataset_refuses_unknown_names_and_fixed_movielens_columns(ml100k_dir):
    with pytest.raises(ValueError, match="neither a dataset name \\(ml-100k, ml-1m\\) nor a file"):
        load_dataset("ml-10m")
    with pytest.raises(ValueError, match="fixed columns"):
        load_dataset("ml-100k", root=ml100k_dir.parent, user="userId")


def test_text_times_in_several_forms_are_all_read():
    log = pd.DataFrame({"user_id": [1, 1, 1], "item_id": [1, 2, 3],
                        "t": ["2024-03-01 18:30", "March 2, 2024 18:30", "2024-03-03T18:30:00Z"]})  # fmt: skip
    frame = load_interactions(log, timestamp="t")
    expected = pd.to_datetime(["2024-03-01 18:30", "2024-03-02 18:30", "2024-03-03 18:30"]).tz_localize("UTC")
    assert frame["timestamp"].tolist() == list(expected)


def test_one_column_cannot_play_two_roles():
    with pytest.raises(ValueError, match="'t' is given as timestamp= and rating="):
        load_interactions(pd.DataFrame({"user_id": [1], "item_id": [1], "t": [1]}), timestamp="t", rating="t")
