"""Files a pipeline run keeps in its run directory: id maps, JSON summaries, frames and saved models.

Every write goes through a temporary file and a rename, so a stage that fails half way never leaves half a
file for the next stage (or a reader) to trust.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data import TIME_OF_DAY, add_context, load_movielens
from ..models import Recommender
from ..splits import IdMap, encode_ids
from .store import NO_CONTEXT

__all__ = [
    "load_ratings", "to_store_frame", "served_map", "ids_payload", "read_ids", "atomic_write", "write_json",
    "needed_file", "read_json", "read_frame", "save_model", "load_saved", "load_model",
]  # fmt: skip


def load_ratings(dataset: str = "100k") -> tuple[pd.DataFrame, IdMap, IdMap, pd.DataFrame]:
    """MovieLens ratings with context features and contiguous ids: (encoded, user map, item map, items)."""
    ml = load_movielens(dataset)
    encoded, users, items = encode_ids(add_context(ml.ratings))
    return encoded, users, items, ml.items


def to_store_frame(lists: pd.DataFrame, users: IdMap, items: IdMap, contexts=TIME_OF_DAY) -> pd.DataFrame:
    """Top-K lists in indices (context -1 = none) -> raw ids and context names, as the store keeps them."""
    names = np.array([*contexts, NO_CONTEXT])  # index -1 picks NO_CONTEXT
    return pd.DataFrame(
        {
            "user": users.to_raw(lists["user"].to_numpy()),
            "context": names[lists["context"].to_numpy()],
            "rank": lists["rank"].to_numpy(),
            "item": items.to_raw(lists["item"].to_numpy()),
            "score": lists["score"].to_numpy(),
        }
    )


def _served_kind(ids: np.ndarray) -> str:
    """ "raw" when raw ids are integers the API accepts (0..2**62), else "index" (text ids: served as 0..n-1)."""
    ids = np.asarray(ids)
    if np.issubdtype(ids.dtype, np.integer) and (len(ids) == 0 or (ids.min() >= 0 and ids.max() <= 2**62)):
        return "raw"
    return "index"


def served_map(ids: IdMap) -> IdMap:
    """The ids the store and the API use: the raw ids, or the indices 0..n-1 for text ids (see ids.json).

    The store keeps integer ids (the API's path parameters are integers), so a log with text ids such as
    ``"u03"`` is served by index: ``ids.ids[index]`` is the raw id of what the API calls ``index``.
    """
    return ids if _served_kind(ids.ids) == "raw" else IdMap(ids.name, np.arange(len(ids)))


def ids_payload(users: IdMap, items: IdMap) -> dict:
    """ids.json: each raw id at its index, and whether the store serves raw ids or indices."""
    return {m.name + "s": {"served": _served_kind(m.ids), "raw": m.ids.tolist()} for m in (users, items)}


def read_ids(run_dir: Path) -> tuple[IdMap, IdMap]:
    payload = read_json(run_dir, "ids.json", "ingest")
    return tuple(IdMap(name, np.asarray(payload[name + "s"]["raw"])) for name in ("user", "item"))


def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Write through a temporary file in the same folder, then rename: readers never see half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json(run_dir: Path, name: str, payload: dict) -> dict:
    atomic_write(run_dir / name, lambda p: p.write_text(json.dumps(payload, indent=2, default=str) + "\n"))
    return payload


def needed_file(run_dir: Path, name: str, stage: str) -> Path:
    """The path of a file an earlier stage writes; a clear ``ValueError`` when that stage has not run."""
    path = Path(run_dir) / name
    if not path.is_file():
        raise ValueError(f"{path} is missing: run the {stage} stage on this run directory first")
    return path


def read_json(run_dir: Path, name: str, stage: str) -> dict:
    return json.loads(needed_file(run_dir, name, stage).read_text())


def read_frame(run_dir: Path, name: str, stage: str) -> pd.DataFrame:
    return pd.read_pickle(needed_file(run_dir, name, stage))  # our own files: written by this module's stages


def save_model(
    path: str | Path, name: str, model: Recommender, users: IdMap, items: IdMap, metrics: dict | None = None
) -> None:
    """Save a fitted model with its id maps (and validation metrics), so a later run can load it instead."""
    payload = {"name": name, "model": model, "users": users, "items": items, "metrics": metrics or {}}
    atomic_write(Path(path), lambda p: torch.save(payload, p))


def load_saved(path: str | Path) -> dict:
    """What :func:`save_model` wrote (a pickle: only load files you made yourself)."""
    if not Path(path).is_file():
        raise ValueError(f"no saved model at {path}: pass a file written by --save (save_model)")
    return torch.load(path, weights_only=False)


def load_model(path: str | Path) -> tuple[str, Recommender, IdMap, IdMap]:
    """Load what :func:`save_model` wrote (a pickle: only load files you made yourself)."""
    saved = load_saved(path)
    return saved["name"], saved["model"], saved["users"], saved["items"]
