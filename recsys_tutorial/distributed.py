"""When one machine is not enough: data-parallel training and sharded top-K with ``torch.distributed``.

The same code trains on one process or on many. ``torchrun`` starts one process (a *rank*) per GPU (or per
CPU worker), and each rank runs the ordinary ``fit``: every rank draws the same seeded global minibatch,
trains on its slice of it through :class:`~torch.nn.parallel.DistributedDataParallel`, and the gradient
all-reduce makes every step the single-process step (:class:`recsys_tutorial.training.GradientSteps`).
Validation runs on rank 0 and is broadcast, so early stopping and the restored best weights agree
everywhere. Batch top-K splits the users into batches dealt round-robin to the ranks; rank 0 gathers every
list and performs the one atomic refresh of the store. GPUs talk through NCCL, CPUs through gloo; without
``torchrun`` the commands run as one ordinary process. Every rank loads the whole interaction table.

One machine, two processes (CPU: add ``OMP_NUM_THREADS=1`` so the ranks do not fight over cores)::

    torchrun --standalone --nproc_per_node=2 -m recsys_tutorial.distributed train --model sasrec --data 100k \\
        --valid --save data/sasrec.pt --db data/recommendations.sqlite
    torchrun --standalone --nproc_per_node=2 -m recsys_tutorial.distributed topk --load data/sasrec.pt \\
        --db data/recommendations.sqlite --k 10

A cluster: run the same command on every node, with the node count, this node's index (0 on the node that
coordinates), and the address and a free port of node 0, which every node must reach::

    torchrun --nnodes=2 --nproc_per_node=8 --node_rank=0 --master_addr=10.0.0.1 --master_port=29500 \\
        -m recsys_tutorial.distributed train --model cp --data 1m       # on node 0; --node_rank=1 on node 1

``--nproc_per_node`` is the number of GPUs of a node (one process each). From a notebook cell or a test,
:func:`launch` runs ``python -m torch.distributed.run`` in a subprocess and returns rank 0's JSON record::

    record = launch(["train", "--model", "sasrec", "--data", "planted", "--set", "epochs=3"], nproc_per_node=2)

References
----------
.. [1] S. Li et al., "PyTorch Distributed: Experiences on Accelerating Data Parallel Training", VLDB 2020.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.distributed as dist

from .data import TIME_OF_DAY, make_catalogue_data, make_planted_data
from .ids import check_ids
from .models import CLICKS_ML100K, PLANTED_CLICKS, CPModel, Recommender, SASRec, as_index
from .ranking import batch_rows
from .serving import topk as serving_topk
from .serving.pipeline import load_ratings, save_model, to_store_frame
from .serving.store import RecommendationStore
from .splits import IdMap, encode_ids, temporal_leave_one_out
from .training import rank, world_size
from .utils import get_device

__all__ = [
    "init", "top_k", "publish", "load_data", "load_model", "build_model", "config_overrides", "launch", "main",
    "MODELS",
]  # fmt: skip

MODELS = ("sasrec", "cp")  # trained data-parallel through GradientSteps (TuckerModel shares CP's loop)


def init() -> torch.device:
    """Join the ``torchrun`` process group if this process was launched by it; return this rank's device.

    NCCL with one GPU per process (``cuda:LOCAL_RANK``) when the device is a GPU, gloo on the CPU (and on
    Apple's MPS, whose tensors gloo cannot reduce, so those ranks train on the CPU). Without ``torchrun``
    (no ``RANK`` in the environment) nothing is joined: one ordinary process on :func:`get_device`.
    """
    device = get_device()
    if "RANK" not in os.environ or dist.is_initialized():
        return _rank_device(device) if dist.is_initialized() else device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    return _rank_device(device)


def _rank_device(device: torch.device) -> torch.device:
    """This rank's device in a joined group: its GPU under NCCL, the CPU under gloo."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu") if device.type == "mps" else device


def top_k(
    model: Recommender,
    k: int = 10,
    users=None,
    contexts: Sequence[int] | None = None,
    batch_size: int | None = None,
    exclude_seen: bool = True,
) -> serving_topk.TopKResult | None:
    """:func:`recsys_tutorial.serving.topk.top_k` with the work split over the ranks; the lists on rank 0.

    The users are cut into batches of ``batch_size`` and every (context, batch) is one unit of work, dealt
    round-robin to the ranks. Each rank scores its units on its device, exactly as one process scores that
    batch; rank 0 gathers the lists and returns them in the single-process order (other ranks return None).
    With the same ``batch_size`` (and devices of one kind) the lists are one process's, bit for bit. By
    default a batch is at most ``len(users) / world_size`` users, so every rank has work, and never more than
    fits :data:`recsys_tutorial.ranking.SCORE_BUDGET_MB`. Rank 0 holds every list, as the store's writer must.
    """
    units, blocks, batch_size = _units(model, k, users, contexts, batch_size)
    start, mine = time.perf_counter(), []
    for unit, (context, block) in enumerate(units):
        if unit % world_size() == rank():
            result = serving_topk.top_k(model, k, blocks[block], None if context is None else [context],
                                        batch_size, exclude_seen)  # fmt: skip
            mine.append((unit, result.lists))
    gathered = [mine]
    if world_size() > 1:
        gathered = [None] * world_size() if rank() == 0 else None
        dist.gather_object(mine, gathered, dst=0)
    if rank() != 0:
        return None
    done = sorted((pair for part in gathered for pair in part), key=lambda pair: pair[0])
    if [unit for unit, _ in done] != list(range(len(units))):
        raise RuntimeError(f"{len(done)} of {len(units)} top-K batches came back from the ranks: nothing published")
    lists = pd.concat([frame for _, frame in done], ignore_index=True)
    peak = min(batch_size, max(len(b) for b in blocks)) * model.n_items * 4
    return serving_topk.TopKResult(lists, time.perf_counter() - start, peak, str(model.device))


def _units(model, k, users, contexts, batch_size) -> tuple[list, list[np.ndarray], int]:
    """(context, block index) units in the single-process order, the user blocks and the batch size."""
    if not 1 <= k <= model.n_items:
        raise ValueError(f"k must lie in 1..{model.n_items} (the model's items), got {k}")
    users = np.arange(model.n_users) if users is None else as_index(users, "cpu").numpy()
    if len(users) == 0:
        raise ValueError("no users to rank: pass at least one user (default: all of them)")
    check_ids(users, model.n_users, "user")
    if batch_size is None:
        batch_size = min(batch_rows(model.n_items), -(-len(users) // world_size()))
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if contexts is None:
        contexts = range(model.n_contexts) if model.uses_context else [None]
    elif not model.uses_context:
        raise ValueError(f"{type(model).__name__} does not use context: call top_k without contexts")
    blocks = [users[lo : lo + batch_size] for lo in range(0, len(users), batch_size)]
    return [(c, b) for c in contexts for b in range(len(blocks))], blocks, batch_size


def publish(
    model: Recommender, name: str, users: IdMap, items: IdMap, db: str | Path | None, k: int = 10,
    batch_size: int | None = None, item_details: pd.DataFrame | None = None,
) -> dict | None:  # fmt: skip
    """Sharded top-K, then rank 0 refreshes ``name``'s lists in the store in one transaction.

    Call on every rank. The store's own checks apply (``RecommendationStore.refresh``): if it refuses the
    lists, or any rank fails before the gather, the old lists stay. Returns rank 0's summary (None elsewhere).
    """
    result = top_k(model, k=k, batch_size=batch_size)
    if result is None:
        return None
    store = RecommendationStore(db)
    if item_details is not None:
        store.write_items(item_details)
    stamp = store.refresh(name, to_store_frame(result.lists, users, items), k=k)
    seconds = round(result.seconds, 3)
    return {"db": store.location, "rows": len(result.lists), "top_k_s": seconds, "generated_at": stamp}


def load_data(data: str = "planted", n_users: int = 300, n_items: int = 90, seed: int = 0, n_interactions: int = 0):
    """Encoded interactions with a ``context_id``, the id maps and item details for the store.

    ``data``: ``"planted"`` (:func:`recsys_tutorial.data.make_planted_data` with ``n_users``, ``n_items``
    and ``seed``), ``"catalogue"`` (:func:`recsys_tutorial.data.make_catalogue_data`: large, sparse and
    long-tailed, with ``n_interactions`` draws, default 10 per user), or ``"100k"`` / ``"1m"`` (MovieLens).
    Returns ``(encoded, users, items, item_details)``.
    """
    if data in ("100k", "1m"):
        return load_ratings(data)
    if data == "catalogue":
        drawn = make_catalogue_data(
            n_users=n_users, n_items=n_items, n_interactions=n_interactions or 10 * n_users, seed=seed
        )
        kind = drawn.items.assign(category=drawn.items["topic"].map("topic {}".format))[["item_id", "category"]]
        return (*encode_ids(drawn.interactions), _details(kind))
    if data != "planted":
        raise ValueError(f"unknown data {data!r}: choose 'planted', 'catalogue', '100k' or '1m'")
    planted = make_planted_data(n_users=n_users, n_items=n_items, seed=seed)
    return (*encode_ids(planted.interactions), _details(planted.items))


def _details(kinds: pd.DataFrame) -> pd.DataFrame:
    """Item details for the store from ``item_id, category`` rows: a made-up title and the category as genre."""
    return pd.DataFrame({
        "item_id": kinds["item_id"], "title": [f"{c} item {i}" for i, c in kinds[["item_id", "category"]].to_numpy()],
        "year": None, "genres": [(str(c),) for c in kinds["category"]],
    })  # fmt: skip


def load_model(path: str | Path, device: torch.device | str) -> tuple[str, Recommender, IdMap, IdMap]:
    """A model saved by ``train --save`` (or the serving pipeline) with its network moved to ``device``.

    Models without a network (popularity, ALS factors) stay on the CPU. A pickle: load only your own files.
    """
    saved = torch.load(path, map_location="cpu", weights_only=False)
    model = saved["model"]
    if hasattr(model, "net_"):
        model.net_.to(device)
        model.device = torch.device(device)
    else:
        model.device = torch.device("cpu")
    return saved["name"], model, saved["users"], saved["items"]


def build_model(name: str, data: str, overrides: dict, device=None, progress: bool = False) -> Recommender:
    """A SASRec or CP model (``name``) with the series' defaults for the ``data`` and the config ``overrides``."""
    if name == "sasrec":
        return SASRec(device=device, progress=progress, **overrides)
    return CPModel(PLANTED_CLICKS if data == "planted" else CLICKS_ML100K, device=device, progress=progress,
                   **overrides)  # fmt: skip


def _fit(model: Recommender, encoded: pd.DataFrame, n_users: int, n_items: int, valid: bool):
    """Fit on everything; with ``valid``, choose the epochs on temporal leave-one-out, then refit on everything.

    Returns the fitted model and the history that chose its epochs (its own without ``valid``).
    """
    sizes = (n_users, n_items) + ((len(TIME_OF_DAY),) if model.context_aware else ())
    if not valid:
        model.fit(encoded, *sizes)
        return model, model.history_
    split = temporal_leave_one_out(encoded)
    chosen = model.fit(split.train, *sizes, valid=split.valid)
    return chosen.refit(encoded), chosen.history_


def config_overrides(model: str, pairs: Sequence[str]) -> dict:
    """``field=value`` strings -> config overrides of ``model`` (sasrec, cp), typed like the config's defaults."""
    fields = {f.name: f for f in dataclasses.fields(SASRec.Config if model == "sasrec" else CPModel.Config)}
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or key not in fields:
            raise ValueError(f"--set {pair!r}: expected field=value with a field among {sorted(fields)}")
        kind = type(fields[key].default)
        out[key] = value.lower() in ("1", "true", "yes") if kind is bool else kind(value)
    return out


def _train(args: argparse.Namespace, device: torch.device) -> dict:
    encoded, users, items, details = load_data(
        args.data, args.n_users, args.n_items, args.data_seed, args.n_interactions
    )
    model = build_model(args.model, args.data, config_overrides(args.model, args.set), device, args.progress)
    model, history = _fit(model, encoded, len(users), len(items), args.valid)
    record = {
        "command": "train", "model": args.model, "data": args.data, "n_users": len(users), "n_items": len(items),
        "interactions": len(encoded), "world_size": world_size(), "device": str(device),
        "config": dataclasses.asdict(model.config), "epochs": history.epochs, "best_epoch": history.best_epoch,
        "valid": history.best_valid if history.valid else None, "metric": history.metric or None,
        "train_loss": history.train_loss, "seconds_per_epoch": float(np.mean(model.history_.epoch_seconds)),
        "fit_s": round(model.history_.seconds, 3),
    }  # fmt: skip
    if args.save and rank() == 0:
        save_model(args.save, args.model, model, users, items)
    if args.save and world_size() > 1:
        dist.barrier()  # the file exists on return, on every rank
    if args.db:
        record["store"] = publish(model, args.model, users, items, args.db, args.k, args.batch_size, details)
    return record


def _topk(args: argparse.Namespace, device: torch.device) -> dict:
    name, model, users, items = load_model(args.load, device)
    summary = publish(model, args.name or name, users, items, args.db, args.k, args.batch_size)
    return {"command": "topk", "model": args.name or name, "world_size": world_size(), "device": str(device),
            "store": summary}  # fmt: skip


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="torchrun --nproc_per_node=N -m recsys_tutorial.distributed",
        description="Data-parallel training and sharded batch top-K (one process without torchrun).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train SASRec or CP data-parallel; optionally save and publish top-K")
    train.add_argument("--model", choices=MODELS, required=True)
    train.add_argument("--data", default="planted", help="planted, catalogue (large, long-tailed), 100k or 1m")
    train.add_argument("--n-users", type=int, default=300, help="planted and catalogue data only")
    train.add_argument("--n-items", type=int, default=90, help="planted and catalogue data only")
    train.add_argument("--n-interactions", type=int, default=0, help="catalogue data (default: 10 per user)")
    train.add_argument("--data-seed", type=int, default=0, help="planted and catalogue data only")
    train.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="config override")
    train.add_argument("--valid", action="store_true", help="choose the epochs on held-out items, then refit")
    train.add_argument("--save", default=None, help="rank 0 saves the fitted model here")
    train.add_argument("--progress", action="store_true", help="a progress bar on rank 0")
    topk = sub.add_parser("topk", help="every user's top-K from a saved model into the store")
    topk.add_argument("--load", required=True, help="a model saved by train --save or the serving pipeline")
    topk.add_argument("--name", default=None, help="the model's name in the store (default: the saved name)")
    for command in (train, topk):
        command.add_argument("--db", default=None, required=command is topk, help="SQLite store to refresh")
        command.add_argument("--k", type=int, default=10)
        command.add_argument("--batch-size", type=int, default=None, help="users per top-K batch")
    return parser


def main(argv: list[str] | None = None) -> int:
    """The command line; rank 0 prints one JSON record. Joins (and leaves) the process group if it is not joined."""
    parser = _parser()
    args = parser.parse_args(argv)
    joined = dist.is_initialized()
    device = init()
    try:
        record = (_train if args.command == "train" else _topk)(args, device)
        if rank() == 0:
            print(json.dumps(record), flush=True)
    except ValueError as err:
        parser.error(str(err))
    finally:
        if not joined and dist.is_initialized():
            dist.destroy_process_group()
    return 0


def launch(args: Sequence[str], nproc_per_node: int = 2, threads: int = 1, timeout: float | None = None) -> dict:
    """Run ``torchrun --standalone --nproc_per_node=N -m recsys_tutorial.distributed ARGS`` in a subprocess.

    For a notebook cell or a test: one machine, ``nproc_per_node`` ranks, ``threads`` CPU threads each.
    Returns rank 0's JSON record; raises ``RuntimeError`` with the output's tail if any rank fails.
    """
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}",
               "-m", "recsys_tutorial.distributed", *args]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:  # the ranks' own errors first: torchrun's summary that ends stderr names none
        errors = [line for line in done.stderr.splitlines() if "Error" in line or "error:" in line][-5:]
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n" + "\n".join(errors)
                           + f"\n...\n{done.stderr[-2000:]}")  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(main())
