"""Data-parallel training and sharded top-K: two gloo ranks on the CPU must reproduce one process.

One ``torchrun`` launch (``python -m torch.distributed.run``, two processes) runs this file as a script: the
worker at the bottom trains SASRec and CP for one epoch through ``recsys_tutorial.distributed.main``, runs the
sharded top-K, and runs early stopping with validation values that differ by rank; it writes what each rank
saw to a folder that the tests below compare with single-process runs. The launch takes ~15 s on two cores.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from recsys_tutorial import distributed
from recsys_tutorial.serving import topk as serving_topk
from recsys_tutorial.serving.pipeline import to_store_frame
from recsys_tutorial.training import GradientSteps, ShardDraws, agreed, run_epochs, sample_negatives

ROOT = Path(__file__).resolve().parents[1]
DATA = ("planted", 40, 60, 0)  # 40 users x 40 clicks, 60 items: every user keeps > K unseen items
K, TOPK_BATCH = 5, 7  # 40 users in batches of 7: six batches, dealt to two ranks
COMMON = ["--n-users", "40", "--n-items", "60", "--set", "epochs=1"]
TRAIN_RUNS = {
    # SASRec windows hold 1..8 targets each: ranks hold unequal target counts, so the n_r / N weighting matters
    "sasrec": ["--model", "sasrec", "--set", "dropout=0", "--set", "dim=16", "--set", "max_len=8",
               "--set", "batch_size=16"],
    "sasrec_bce": ["--model", "sasrec", "--set", "dropout=0", "--set", "dim=16", "--set", "max_len=8",
                   "--set", "batch_size=16", "--set", "loss=bce"],
    # the large-catalogue loss: negatives shared by the whole global batch, drawn alike on every rank
    "sasrec_sampled": ["--model", "sasrec", "--set", "dropout=0", "--set", "dim=16", "--set", "max_len=8",
                       "--set", "batch_size=16", "--set", "loss=sampled", "--set", "n_negatives=24"],
    # 1,600 clicks in batches of 533: the last batch has one row, fewer than the ranks (it runs on both)
    "cp": ["--model", "cp", "--set", "batch_size=533"],
}  # fmt: skip


# --- the two-rank run (launched once for the module) ------------------------------------------------------


@pytest.fixture(scope="module")
def ranks(tmp_path_factory) -> Path:
    """Run the worker on two gloo ranks; the folder of what they wrote."""
    out = tmp_path_factory.mktemp("distributed")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "RECSYS_TUTORIAL_DEVICE": "cpu",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}  # fmt: skip
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", __file__, str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return out


def _one_process(saved: Path):
    """The saved two-rank model, and the same model trained by one process on the same data and config."""
    _, two, _, _ = distributed.load_model(saved, "cpu")
    encoded, users, items, _ = distributed.load_data(*DATA)
    one = type(two)(two.config, device="cpu", progress=False)
    sizes = (len(users), len(items)) + ((4,) if one.context_aware else ())
    return two, one.fit(encoded, *sizes)


def _learnable(model) -> dict[str, torch.Tensor]:
    r"""The network's weights, less the attention *key* biases, which the model's output does not depend on.

    A key bias adds :math:`q_t^\top b_k` to every attention logit of row t, which the softmax ignores: its
    gradient is zero up to rounding (~1e-10 against ~1e-3 for the query bias), and Adam's normalised step turns
    that rounding into steps of up to ``lr`` in any two runs that round differently. The scores are compared too.
    """
    state = model.net_.state_dict()
    D = getattr(model.config, "dim", 0)
    return {name: torch.cat([w[:D], w[2 * D :]]) if name.endswith("attn.qkv.bias") else w for name, w in state.items()}


@pytest.mark.parametrize("run", list(TRAIN_RUNS))
def test_two_ranks_train_the_weights_of_one_process(ranks, run):
    two, one = _one_process(ranks / f"{run}.pt")
    assert two.history_.epochs == one.history_.epochs == 1
    for (name, a), b in zip(_learnable(two).items(), _learnable(one).values(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=f"{run}: {name} differs from one process")
    torch.testing.assert_close(two.score(range(40)), one.score(range(40)), rtol=1e-4, atol=1e-5)
    assert two.history_.train_loss == pytest.approx(one.history_.train_loss, rel=1e-5)
    # ... and each rank trained on its half of every batch, not on all of it
    rows = [json.loads((ranks / f"{run}_rows_rank{r}.json").read_text()) for r in (0, 1)]
    n_rows = len(one._training_pairs(distributed.load_data(*DATA)[0])[0]) if run.startswith("sasrec") else 1600
    assert rows[0]["shared"] == rows[1]["shared"]  # batches smaller than the ranks run whole on both
    assert rows[0]["own"] + rows[1]["own"] + rows[0]["shared"] == n_rows
    assert max(rows[0]["own"], rows[1]["own"]) <= n_rows // 2 + 1


def test_sharded_top_k_is_exactly_the_single_process_lists(ranks):
    _, model, _, _ = distributed.load_model(ranks / "cp.pt", "cpu")
    expected = serving_topk.top_k(model, k=K, batch_size=TOPK_BATCH).lists
    pd.testing.assert_frame_equal(pd.read_pickle(ranks / "cp_lists.pkl"), expected)  # same order, same bits
    scored = [np.load(ranks / f"topk_users_rank{r}.npy") for r in (0, 1)]
    assert len(scored[0]) and len(scored[1])  # both ranks scored users ...
    assert sorted(np.concatenate(scored).tolist()) == sorted(list(range(40)) * 4)  # ... each (user, context) once


def test_the_store_holds_exactly_the_single_process_lists(ranks):
    with sqlite3.connect(ranks / "store.sqlite") as db:
        for name in ("sasrec", "cp"):
            stored = pd.read_sql_query(
                "SELECT user, context, rank, item, score FROM recommendations WHERE model = ? "
                "ORDER BY context, user, rank", db, params=(name,),
            )  # fmt: skip
            _, model, users, items = distributed.load_model(ranks / f"{name}.pt", "cpu")
            lists = serving_topk.top_k(model, k=K, batch_size=TOPK_BATCH).lists
            expected = to_store_frame(lists, users, items).sort_values(["context", "user", "rank"], kind="stable")
            pd.testing.assert_frame_equal(stored, expected.reset_index(drop=True), check_dtype=False)


def test_early_stopping_follows_rank_0_on_every_rank(ranks):
    stops = [json.loads((ranks / f"stop_rank{r}.json").read_text()) for r in (0, 1)]
    assert stops[0] == stops[1]
    assert stops[0]["valid"] == [0.1, 0.3, 0.2]  # rank 0's values; rank 1 alone would have stopped after epoch 2
    assert stops[0]["best_epoch"] == 1 and stops[0]["weight"] == 1.0  # rank 0's best weights, restored on both


def test_a_validated_fit_agrees_across_ranks(ranks):
    fits = [json.loads((ranks / f"valid_rank{r}.json").read_text()) for r in (0, 1)]
    assert fits[0] == fits[1]  # same validation curve, stopping epoch and restored weights (dropout on)
    assert len(fits[0]["valid"]) == fits[0]["epochs"] >= 2


# --- single-process pieces --------------------------------------------------------------------------------


def test_shard_draws_are_the_shards_rows_of_the_global_draw():
    whole = torch.randint(0, 50, (10, 3), generator=torch.Generator().manual_seed(4))
    generator = torch.Generator().manual_seed(4)
    part = sample_negatives(50, (4, 3), ShardDraws(generator, offset=6, count=4, total=10))
    torch.testing.assert_close(part, whole[6:])
    after_whole = torch.Generator().manual_seed(4)
    torch.randint(0, 50, (10, 3), generator=after_whole)
    assert torch.equal(generator.get_state(), after_whole.get_state())  # every rank's generator stays in step
    with pytest.raises(ValueError, match="one row per target"):
        sample_negatives(50, (5, 3), ShardDraws(torch.Generator(), offset=0, count=4, total=10))


def test_one_process_steps_leave_batches_and_values_alone():
    net = torch.nn.Linear(2, 1)
    steps = GradientSteps(net, torch.optim.SGD(net.parameters(), lr=0.1))
    batch, generator = torch.arange(5), torch.Generator()
    mine, draws = steps.shard(batch, generator)
    assert mine is batch and draws is generator
    assert agreed(lambda: 0.25) == 0.25


def test_the_command_line_runs_as_one_process_and_refuses_unknown_fields(tmp_path, capsys):
    assert distributed.main(["train", "--model", "cp", *COMMON, "--db", str(tmp_path / "s.sqlite"), "--k", "3"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["world_size"] == 1 and record["store"]["rows"] == 40 * 4 * 3
    with pytest.raises(SystemExit):
        distributed.main(["train", "--model", "sasrec", "--set", "bogus=1"])
    assert "bogus" in capsys.readouterr().err


# --- the worker each rank runs ----------------------------------------------------------------------------


def _spy_on_shards(log: dict) -> None:
    """Count the training rows this rank holds alone, and those every rank holds (batches smaller than the ranks)."""
    shard = GradientSteps.shard

    def spied(self, batch, generator, targets_per_row=None):
        mine, draws = shard(self, batch, generator, targets_per_row)
        log["shared" if len(mine) == len(batch) else "own"] += len(mine)
        return mine, draws

    GradientSteps.shard = spied


def _spy_on_top_k(scored: list) -> None:
    """Record every user this rank scores (once per context)."""
    top_k = serving_topk.top_k

    def spied(model, k, users, contexts, *args):
        scored.extend(np.asarray(users).tolist() * (1 if contexts is None else len(contexts)))
        return top_k(model, k, users, contexts, *args)

    serving_topk.top_k = spied


def _early_stopping(out: Path, rank: int) -> None:
    """Validation values that differ by rank: rank 1's own would stop after epoch 2, rank 0's after epoch 3."""
    values, calls = [[0.1, 0.3, 0.2], [0.5, 0.4, 0.3]][rank], []
    net = torch.nn.Linear(1, 1, bias=False)

    def run_epoch(epoch: int) -> float:
        with torch.no_grad():
            net.weight.fill_(float(epoch))  # the weights after epoch e are e: which were restored is visible
        return 0.0

    def validate() -> float:
        calls.append(None)
        return values[len(calls) - 1]

    history = run_epochs(run_epoch, 3, validate, module=net, patience=1, progress=False)
    (out / f"stop_rank{rank}.json").write_text(json.dumps(
        {"valid": history.valid, "best_epoch": history.best_epoch, "epochs": history.epochs,
         "weight": float(net.weight)}
    ))  # fmt: skip


def _validated_fit(out: Path, rank: int) -> None:
    """A SASRec fit with dropout and early stopping on held-out items, as every rank saw it."""
    from recsys_tutorial.models import SASRec
    from recsys_tutorial.splits import temporal_leave_one_out

    split = temporal_leave_one_out(distributed.load_data(*DATA)[0])
    model = SASRec(device="cpu", progress=False, dim=16, max_len=8, epochs=4, patience=1, lr=0.02)
    model.fit(split.train, split.n_users, split.n_items, valid=split.valid)
    weights = float(sum(p.double().sum() for p in model.net_.parameters()))
    (out / f"valid_rank{rank}.json").write_text(json.dumps(
        {"valid": model.history_.valid, "best_epoch": model.history_.best_epoch, "epochs": model.history_.epochs,
         "weights": weights}
    ))  # fmt: skip


def _worker(out: Path) -> None:
    """What each of the two ranks runs (``python -m torch.distributed.run ... test_distributed.py OUT``)."""
    distributed.init()
    rank, log, scored = distributed.rank(), {}, []
    publish = ["--db", str(out / "store.sqlite"), "--k", str(K), "--batch-size", str(TOPK_BATCH)]
    _spy_on_shards(log)
    for run, args in TRAIN_RUNS.items():
        log.update(own=0, shared=0)
        save = ["--save", str(out / f"{run}.pt")]
        distributed.main(["train", *args, *COMMON, *save, *(publish if run == "sasrec" else [])])
        (out / f"{run}_rows_rank{rank}.json").write_text(json.dumps(log))
    _spy_on_top_k(scored)
    _, model, _, _ = distributed.load_model(out / "cp.pt", "cpu")
    result = distributed.top_k(model, k=K, batch_size=TOPK_BATCH)
    np.save(out / f"topk_users_rank{rank}.npy", np.array(scored, dtype=np.int64))
    if rank == 0:
        result.lists.to_pickle(out / "cp_lists.pkl")
    distributed.main(["topk", "--load", str(out / "cp.pt"), *publish])
    _early_stopping(out, rank)
    _validated_fit(out, rank)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
