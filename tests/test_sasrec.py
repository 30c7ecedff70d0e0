"""SASRec: causal masking, padding invariance, attention against PyTorch's reference, id checks, seeds."""

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from recsys_tutorial.models.sasrec import SASRec, SASRecConfig, SASRecNet
from recsys_tutorial.models.transformer import Block, attention, attention_mask
from recsys_tutorial.sequences import left_pad

N_ITEMS, N_USERS = 12, 4


def tiny_net(**overrides) -> SASRecNet:
    torch.manual_seed(0)
    config = SASRecConfig(**{"max_len": 8, "dim": 16, "n_heads": 2, "dropout": 0.0, **overrides})
    return SASRecNet(N_ITEMS, N_USERS, config).eval()


def tiny_interactions(n_users: int = N_USERS, length: int = 6, seed: int = 0) -> pd.DataFrame:
    """Each user walks item i -> i + 1 (mod N_ITEMS) from a random start: a sequence with a known next item."""
    rng = np.random.default_rng(seed)
    rows = [(u, (start + t) % N_ITEMS, t) for u in range(n_users) for start in [rng.integers(N_ITEMS)]
            for t in range(length)]  # fmt: skip
    df = pd.DataFrame(rows, columns=["user", "item", "t"])
    df["timestamp"] = pd.to_datetime(df["t"], unit="s", utc=True)
    return df


def test_attention_equals_scaled_dot_product_attention():
    torch.manual_seed(0)
    q, k, v = torch.randn(3, 3, 2, 7, 5).unbind(0)  # each (B=3, H=2, T=7, d=5)
    tokens = left_pad([np.array([1, 2]), np.arange(7), np.array([4, 4, 4, 4])], max_len=7)  # (3, 7)
    mask = attention_mask(tokens)  # (3, 1, 7, 7)
    ours, weights = attention(q, k, v, mask)
    reference = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(ours, reference)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2, 7))


def test_mask_is_causal_and_hides_padding():
    mask = attention_mask(left_pad([np.array([5, 6])], max_len=4))[0, 0]  # (T, T), tokens 0 0 6 7
    expected = torch.tensor([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 1, 1]], dtype=torch.bool)
    assert torch.equal(mask, expected)


def test_future_items_never_change_earlier_outputs():
    net = tiny_net()
    tokens = torch.tensor([[0, 0, 3, 5, 7, 2, 9, 4]])  # (1, T)
    changed = tokens.clone()
    changed[0, 5:] = torch.tensor([11, 1, 12])  # rewrite the last three items
    with torch.no_grad():
        h, h_changed = net(tokens), net(changed)
    torch.testing.assert_close(h[0, :5], h_changed[0, :5])
    assert not torch.allclose(h[0, 5:], h_changed[0, 5:])


def test_extra_left_padding_does_not_change_scores():
    net = tiny_net()
    history = np.array([3, 0, 7, 7, 2])
    with torch.no_grad():
        short = net(left_pad([history], max_len=5))[:, -1]  # (1, D)
        padded = net(left_pad([history], max_len=8))[:, -1]  # (1, D)
    torch.testing.assert_close(net.logits(short), net.logits(padded))


def test_padding_embedding_is_zero():
    assert torch.count_nonzero(tiny_net().item.weight[0]) == 0


@pytest.mark.parametrize("bad", [N_ITEMS + 1, -1])
def test_out_of_range_item_raises_value_error(bad):
    with pytest.raises(ValueError, match="out of range"):
        tiny_net()(torch.tensor([[0, 1, bad]]))


def test_out_of_range_ids_raise_in_the_recommender():
    df = tiny_interactions()
    model = SASRec(SASRecConfig(max_len=8, dim=16, epochs=1), device="cpu", progress=False)
    model.fit(df, N_USERS, N_ITEMS)
    with pytest.raises(ValueError, match="user id 4 is out of range"):
        model.score([4])
    bad = df.assign(item=df["item"].where(df.index != 0, N_ITEMS))
    with pytest.raises(ValueError, match="item id 12 is out of range"):
        model.set_history(bad)


def test_learns_a_deterministic_walk_and_respects_the_contract():
    df = tiny_interactions(n_users=40, length=8)
    config = SASRecConfig(max_len=8, dim=16, epochs=60, lr=1e-2, dropout=0.0, seed=1)
    model = SASRec(config, device="cpu", progress=False).fit(df, 40, N_ITEMS)
    last = df.groupby("user")["item"].last().to_numpy()
    scores = model.score(np.arange(40))
    assert scores.shape == (40, N_ITEMS)
    assert (scores.argmax(1).numpy() == (last + 1) % N_ITEMS).mean() > 0.9
    top, _ = model.recommend(np.arange(40), k=3)
    for u in range(40):
        assert not set(top[u].tolist()) & set(df.loc[df["user"] == u, "item"])


@pytest.mark.parametrize("loss", ["ce", "bce"])
def test_same_seed_same_scores(loss):
    df = tiny_interactions()
    config = SASRecConfig(max_len=8, dim=16, epochs=2, loss=loss, seed=3)
    a = SASRec(config, device="cpu", progress=False).fit(df, N_USERS, N_ITEMS).score(range(N_USERS))
    b = SASRec(config, device="cpu", progress=False).fit(df, N_USERS, N_ITEMS).score(range(N_USERS))
    torch.testing.assert_close(a, b)


def test_attention_maps_rows_sum_to_one():
    df = tiny_interactions()
    model = SASRec(SASRecConfig(max_len=8, dim=16, n_heads=2, epochs=1), device="cpu", progress=False)
    maps, items = model.fit(df, N_USERS, N_ITEMS).attention_maps(0)
    assert len(maps) == 2 and maps[0].shape == (2, 6, 6) and len(items) == 6
    torch.testing.assert_close(maps[0].sum(-1), torch.ones(2, 6))
    assert torch.all(maps[0].triu(1) == 0)  # nothing attends to the future


def test_bad_config_raises():
    with pytest.raises(ValueError, match="loss"):
        SASRecConfig(loss="mse")
    with pytest.raises(ValueError, match="divisible"):
        SASRecConfig(dim=10, n_heads=3)


def test_item_init_sets_embeddings_and_checks_shape():
    df = tiny_interactions()
    V = torch.randn(N_ITEMS, 16)
    model = SASRec(SASRecConfig(max_len=8, dim=16, epochs=1, lr=1e-12), item_init=V, device="cpu", progress=False)
    model.fit(df, N_USERS, N_ITEMS)
    weights = model.net_.item.weight.detach()[1:]
    torch.testing.assert_close(weights / weights.std(), V / V.std(), atol=1e-4, rtol=1e-4)
    with pytest.raises(ValueError, match="rank=16"):
        SASRec(SASRecConfig(max_len=8, dim=16, epochs=1), item_init=torch.randn(N_ITEMS, 8), progress=False).fit(
            df, N_USERS, N_ITEMS
        )


def test_frozen_item_embeddings_keep_their_initialisation():
    df = tiny_interactions()
    V = torch.randn(N_ITEMS, 16)
    config = SASRecConfig(max_len=8, dim=16, epochs=2, lr=1e-2, freeze_items=True)
    frozen = SASRec(config, item_init=V, device="cpu", progress=False).fit(df, N_USERS, N_ITEMS)
    trained = SASRec(config, item_init=V, freeze_items=False, device="cpu", progress=False).fit(df, N_USERS, N_ITEMS)
    start = V / V.std() * 16**-0.5
    torch.testing.assert_close(frozen.net_.item.weight.detach()[1:], start)
    assert not torch.allclose(trained.net_.item.weight.detach()[1:], start)
    assert frozen.n_parameters() == trained.n_parameters() - (N_ITEMS + 1) * 16


def test_without_the_causal_mask_future_items_leak_into_earlier_outputs():
    tokens = torch.tensor([[0, 0, 3, 5, 7, 2, 9, 4]])  # (1, T)
    changed = tokens.clone()
    changed[0, 5:] = torch.tensor([11, 1, 12])
    leaky = tiny_net(causal=False)
    with torch.no_grad():
        h, h_changed = leaky(tokens), leaky(changed)
    assert not torch.allclose(h[0, 2:5], h_changed[0, 2:5])  # earlier real positions read the rewritten future


def test_block_forward_written_out_equals_the_module():
    """Pre-LayerNorm block by hand: x + attn(LN1 x), then + FFN(LN2 x), with the module's own weights."""
    torch.manual_seed(0)
    block = Block(dim=8, n_heads=2, dropout=0.0).eval()
    x = torch.randn(2, 5, 8)  # (B, T, D)
    mask = attention_mask(left_pad([np.array([1, 2]), np.arange(5)], max_len=5))
    a = block.attn
    q, k, v = a.qkv(block.ln1(x)).split(8, dim=-1)  # 3 x (B, T, D)
    q, k, v = (z.view(2, 5, 2, 4).transpose(1, 2) for z in (q, k, v))  # (B, H, T, d)
    y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(2, 5, 8)
    h = x + a.out(y)
    expected = h + block.ffn(block.ln2(h))
    torch.testing.assert_close(block(x, mask), expected)
