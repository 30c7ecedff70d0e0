"""Features and the feature-aware transformer: alignment with the ids, graceful absence, masks, cold items."""

import numpy as np
import pandas as pd
import pytest
import torch

from recsys_tutorial.data import Dataset, load_dataset
from recsys_tutorial.data.features import Features, item_features, require_features, user_features
from recsys_tutorial.models import FeatureTransformer, GenrePopularity
from recsys_tutorial.models.feature_transformer import FeatureTransformerConfig, FeatureTransformerNet
from recsys_tutorial.sequences import left_pad
from recsys_tutorial.splits import IdMap, encode_ids

N_ITEMS, N_USERS, N_CONTEXTS = 12, 6, 3


def toy_features() -> tuple[Features, Features]:
    items = Features.from_arrays(
        "item", fields={"year": np.arange(N_ITEMS) % 3}, bags={"genres": np.eye(2, dtype=int)[np.arange(N_ITEMS) % 2]}
    )
    return items, Features.from_arrays("user", fields={"age": np.arange(N_USERS) % 2})


def tiny_net(**overrides) -> FeatureTransformerNet:
    torch.manual_seed(0)
    config = FeatureTransformerConfig(**{"max_len": 8, "dim": 16, "n_heads": 2, "dropout": 0.0, **overrides})
    net = FeatureTransformerNet(N_ITEMS, N_CONTEXTS, config, *toy_features()).eval()
    with torch.no_grad():  # ids start at zero; give them values so the id path is exercised too
        net.item_id.weight[1:-1].normal_(std=0.25)
    return net


# --- encoding ---------------------------------------------------------------------------------------------


def test_movielens_100k_features_are_aligned_with_the_encoding(ml100k_dir):
    data = load_dataset("ml-100k", root=ml100k_dir.parent, download=False)
    encoded, users, items = encode_ids(data.ratings)
    fi, fu = item_features(data, items), user_features(data, users)
    assert len(fi) == 1682 and len(fu) == 943 and fi.bags["genres"].shape == (1682, 19)
    toy_story = fi.table().iloc[int(items.to_index([1])[0])]  # raw item 1: Toy Story (1995)
    assert toy_story["year"] == "1995" and set(toy_story["genres"]) == {"Animation", "Children's", "Comedy"}
    first = fu.table().iloc[int(users.to_index([1])[0])]  # raw user 1: 24, M, technician
    assert (first["age"], first["gender"], first["occupation"]) == ("18-24", "M", "technician")


def test_movielens_1m_conventions_share_the_age_groups():
    users = pd.DataFrame({"user_id": [10, 20, 30], "age": pd.Categorical(["25-34", "Under 18", "56+"]),
                          "gender": ["F", "M", "F"], "occupation": ["writer", "other", "writer"]})  # fmt: skip
    items = pd.DataFrame({"item_id": [5, 7], "year": pd.array([2000, None], dtype="Int64"),
                          "genres": [("Drama",), "Comedy|Drama"]})  # fmt: skip
    fu = user_features(users, IdMap("user", np.array([10, 20, 30, 40])))  # user 40 has no row: unknown
    assert fu.table()["age"].tolist() == ["25-34", "Under 18", "56+", "unknown"]
    fi = item_features(items, IdMap("item", np.array([5, 7]))).table()
    assert fi["year"].tolist() == ["1998+", "unknown"] and fi["genres"].tolist() == [("Drama",), ("Comedy", "Drama")]


def test_no_metadata_gives_none_and_a_clear_message_where_features_are_needed():
    ratings = pd.DataFrame({"user_id": [1, 2], "item_id": [3, 4]})
    data = Dataset("log", ratings)
    ids = IdMap("item", np.array([3, 4]))
    assert item_features(data, ids) is None and user_features(data, IdMap("user", np.array([1, 2]))) is None
    with pytest.raises(ValueError, match="no items table"):
        require_features(None, "item", "GenrePopularity")
    train = pd.DataFrame({"user": [0, 1], "item": [0, 1]})
    with pytest.raises(ValueError, match="GenrePopularity needs item features"):
        GenrePopularity(device="cpu").fit(train, 2, 2)


def test_ids_unknown_to_the_metadata_table_are_refused_when_none_match():
    with pytest.raises(ValueError, match="none of the 2 encoded item ids"):
        item_features(pd.DataFrame({"item_id": ["a"], "year": [1990]}), IdMap("item", np.array([1, 2])))


@pytest.mark.parametrize("bad", [{"fields": {"year": [0, 3]}}, {"fields": {"year": [-1, 0]}}])
def test_a_feature_code_out_of_range_raises_value_error(bad):
    with pytest.raises(ValueError, match="item year id .* is out of range"):
        Features.from_arrays("item", **bad, vocab={"year": ("unknown", "old", "new")})


def test_features_of_the_wrong_size_are_refused_by_fit():
    fi, _ = toy_features()
    model = FeatureTransformer(item_features=fi, epochs=1, device="cpu", progress=False)
    with pytest.raises(ValueError, match="item features have 12 rows but fit got n_items=13"):
        model.fit(walks(), N_USERS, N_ITEMS + 1, N_CONTEXTS)


# --- the network ------------------------------------------------------------------------------------------


def test_item_features_change_scores():
    net = tiny_net()
    q = net(left_pad([np.array([3, 5, 1])], 8), torch.tensor([0]), torch.zeros(1, 8, dtype=torch.long))[:, -1]
    before = net.logits(q)  # (1, n_items)
    net.item_features.field_year.copy_((net.item_features.field_year + 1) % 3)  # other release years
    assert not torch.allclose(before, net.logits(q))


def test_future_items_and_contexts_never_change_earlier_outputs():
    net = tiny_net()
    tokens = torch.tensor([[0, 0, 13, 5, 7, 2, 9, 4]])  # (1, T), 13 = BOS
    contexts = torch.tensor([[0, 0, 1, 2, 0, 1, 2, 0]])
    changed, changed_ctx = tokens.clone(), contexts.clone()
    changed[0, 5:], changed_ctx[0, 5:] = torch.tensor([11, 1, 12]), torch.tensor([2, 2, 1])
    with torch.no_grad():
        h, h_changed = net(tokens, torch.tensor([1]), contexts), net(changed, torch.tensor([1]), changed_ctx)
    torch.testing.assert_close(h[0, :5], h_changed[0, :5])
    assert not torch.allclose(h[0, 5:], h_changed[0, 5:])


def test_extra_left_padding_does_not_change_scores():
    net = tiny_net()
    history = np.array([N_ITEMS, 3, 0, 7, 7, 2])  # BOS (item index N_ITEMS) first
    with torch.no_grad():
        short = net(left_pad([history], 6), torch.tensor([2]), torch.ones(1, 6, dtype=torch.long))[:, -1]
        padded = net(left_pad([history], 8), torch.tensor([2]), torch.ones(1, 8, dtype=torch.long))[:, -1]
    torch.testing.assert_close(net.logits(short), net.logits(padded))


def test_items_without_training_interactions_are_left_out_of_the_training_softmax_only():
    net = tiny_net()
    net.known[3] = False
    q = torch.randn(2, 16)
    assert torch.isneginf(net.train().logits(q)[:, 3]).all()  # never a target: not pushed down either
    assert torch.isfinite(net.eval().logits(q)).all()  # ranked at evaluation, from its features
    torch.testing.assert_close(net.items()[3], net.item_features()[3])


@pytest.mark.parametrize("bad", [N_ITEMS + 2, -1])
def test_out_of_range_token_raises_value_error(bad):
    with pytest.raises(ValueError, match="out of range"):
        tiny_net()(torch.tensor([[0, 1, bad]]), torch.tensor([0]))


# --- the recommender --------------------------------------------------------------------------------------


def walks(n_users: int = N_USERS, length: int = 6, seed: int = 0, held_out=()) -> pd.DataFrame:
    """Each user walks over items of one parity (user parity), skipping ``held_out``, with random contexts."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        pool = [i for i in range(u % 2, N_ITEMS, 2) if i not in held_out]
        for t, i in enumerate(rng.choice(pool, size=min(length, len(pool)), replace=False)):
            rows.append((u, int(i), t, int(rng.integers(N_CONTEXTS))))
    df = pd.DataFrame(rows, columns=["user", "item", "t", "context_id"])
    df["timestamp"] = pd.to_datetime(df["t"], unit="s", utc=True)
    return df


def fit_model(df: pd.DataFrame, n_users: int = N_USERS, **overrides) -> FeatureTransformer:
    fi, _ = toy_features()
    fu = Features.from_arrays("user", fields={"age": np.arange(n_users) % 2})
    config = {"max_len": 8, "dim": 16, "epochs": 30, "lr": 1e-2, "dropout": 0.0, "seed": 1, **overrides}
    model = FeatureTransformer(item_features=fi, user_features=fu, device="cpu", progress=False, **config)
    return model.fit(df, n_users, N_ITEMS, N_CONTEXTS)


def test_cold_items_are_scored_by_their_features():
    """Items 10 and 11 never occur in training: each is ranked for the users who like its genre (parity)."""
    df = walks(n_users=20, length=4, held_out=(10, 11))
    model = fit_model(df, n_users=20)
    scores = model.score(np.arange(20))  # (20, n_items)
    even = np.arange(20) % 2 == 0
    assert (scores[even, 10] > scores[even, 11]).all() and (scores[~even, 11] > scores[~even, 10]).all()
    ids_only = fit_model(df, n_users=20, use_item_features=False).score(np.arange(20))
    torch.testing.assert_close(ids_only[:, 10], ids_only[:, 11])  # without features two cold items are alike


def test_context_changes_scores_and_without_context_is_the_share_weighted_mean():
    model = fit_model(walks(), epochs=2)
    per_context = torch.stack([model.score(np.arange(N_USERS), [c] * N_USERS) for c in range(N_CONTEXTS)])
    assert not torch.allclose(per_context[0], per_context[1])
    share = model.net_.context_share  # (n_contexts,)
    torch.testing.assert_close(model.score(np.arange(N_USERS)), torch.einsum("c,cbi->bi", share, per_context))
    no_context = fit_model(walks(), epochs=2, use_context=False)
    assert not no_context.uses_context
    with pytest.raises(ValueError, match="does not use context"):
        no_context.score([0], [1])


def test_users_without_history_are_scored_from_their_features_and_context():
    df = walks()
    new_users = df["user"].isin([0, 1])  # users 0 and 1 (ages 0 and 1) have no training interaction
    model = fit_model(df[~new_users], epochs=3)
    assert model.seen_[0].size == 0 and torch.isfinite(model.score([0, 1], [1, 1])).all()
    assert not torch.allclose(model.score([0]), model.score([1]))  # their user features differ
    assert not torch.allclose(model.score([0], [0]), model.score([0], [2]))
    blind = fit_model(df[~new_users], epochs=3, use_user_features=False)
    torch.testing.assert_close(blind.score([0]), blind.score([1]))


def test_a_missing_context_column_is_named():
    with pytest.raises(ValueError, match="no 'context_id' column"):
        fit_model(walks().drop(columns="context_id"))
