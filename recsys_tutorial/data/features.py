"""Item and user features as integer tensors aligned with the encoded ids, for feature-aware models.

A feature-aware recommender reads, besides the ids, what the catalogue and the sign-up form say about them.
Here each feature becomes integer *codes* whose row ``r`` describes encoded index ``r`` of an
:class:`~recsys_tutorial.splits.IdMap`, so ``features.fields["year"][item]`` is the year bucket of ``item``:

* **fields**, one code per row (release-year bucket; age bucket, gender, occupation), code 0 = "unknown";
* **bags**, any number of values per row (genres), as a 0/1 multi-hot matrix (n, vocabulary size).

MovieLens 100K and 1M both work: their ``items`` tables carry ``year`` and ``genres`` (a tuple of names),
their ``users`` tables ``age`` (years in 100K, ML-1M's age-group labels in 1M), ``gender`` and ``occupation``.
Ages are bucketed into ML-1M's groups, so both datasets share one vocabulary. A dataset without metadata
(``Dataset.items is None``) gives ``None``; :func:`require_features` turns that into a clear error for a
model that cannot do without.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from ..ids import check_ids
from ..splits import IdMap
from .dataset import Dataset

__all__ = [
    "Features", "item_features", "user_features", "require_features", "year_buckets", "age_groups", "genre_bag",
    "YEAR_EDGES", "AGE_GROUPS", "UNKNOWN",
]  # fmt: skip

UNKNOWN = "unknown"  # code 0 of every field: a missing or unparseable value

# Release-year buckets start at these years. Coarse for old films, one bucket per year for the last few:
# items that only appear late in MovieLens' timeline are mostly that year's releases, so "new" must be visible.
YEAR_EDGES = (1950, 1970, 1980, 1990, 1993, 1995, 1996, 1997, 1998)

# ML-1M's age groups (lower bound, label); ML-100K's ages in years are bucketed into the same groups.
AGE_GROUPS = ((0, "Under 18"), (18, "18-24"), (25, "25-34"), (35, "35-44"), (45, "45-49"), (50, "50-55"), (56, "56+"))


@dataclass(frozen=True)
class Features:
    """Integer-coded features of ``n`` rows (items or users); row ``r`` is encoded index ``r``.

    Attributes
    ----------
    kind : {"item", "user"}
    fields : dict of name -> (n,) long tensor
        One code per row in ``0..len(vocab[name]) - 1``; code 0 is :data:`UNKNOWN`.
    bags : dict of name -> (n, V) long tensor
        0/1 multi-hot rows over the ``V = len(vocab[name])`` values of the bag (a row may be all zero).
    vocab : dict of name -> tuple of str
        What each code means.

    Construction checks every code against its vocabulary: an out-of-range code raises ``ValueError``.
    """

    kind: str
    fields: dict[str, torch.Tensor]
    bags: dict[str, torch.Tensor]
    vocab: dict[str, tuple[str, ...]]

    def __post_init__(self):
        if self.kind not in ("item", "user"):
            raise ValueError(f"kind must be 'item' or 'user', got {self.kind!r}")
        missing = sorted((set(self.fields) | set(self.bags)) - set(self.vocab))
        if missing or set(self.fields) & set(self.bags):
            raise ValueError(f"every feature needs one vocabulary and one role (field or bag); check {missing}")
        sizes = {len(t) for t in (*self.fields.values(), *self.bags.values())}
        if len(sizes) > 1:
            raise ValueError(f"{self.kind} features disagree on the number of rows: {sorted(sizes)}")
        for name, codes in self.fields.items():
            if codes.ndim != 1:
                raise ValueError(f"{self.kind} field {name!r} must be 1-D (one code per row), got {tuple(codes.shape)}")
            check_ids(codes, len(self.vocab[name]), f"{self.kind} {name}", "Codes index the feature's vocab.")
        for name, bag in self.bags.items():
            if bag.ndim != 2 or bag.shape[1] != len(self.vocab[name]):
                shape = (len(bag), len(self.vocab[name]))
                raise ValueError(f"{self.kind} bag {name!r} must have shape {shape}, got {tuple(bag.shape)}")
            if bag.numel() and (bag.min() < 0 or bag.max() > 1):
                raise ValueError(f"{self.kind} bag {name!r} must be 0/1 multi-hot, got values {bag.min()}..{bag.max()}")

    def __len__(self) -> int:
        return len(next(iter((*self.fields.values(), *self.bags.values())), ()))

    @property
    def names(self) -> tuple[str, ...]:
        return (*self.fields, *self.bags)

    @classmethod
    def from_arrays(cls, kind: str, fields: dict | None = None, bags: dict | None = None, vocab: dict | None = None):
        """Features from integer arrays; a vocabulary not given is named by the codes ("0", "1", ...).

        >>> Features.from_arrays("item", fields={"year": [0, 2, 1]}, bags={"genres": [[1, 0], [0, 1], [1, 1]]})
        Features(item: 3 rows, fields year (3 values), bags genres (2 values))
        """
        fields = {k: torch.as_tensor(np.asarray(v), dtype=torch.long) for k, v in (fields or {}).items()}
        bags = {k: torch.as_tensor(np.asarray(v), dtype=torch.long) for k, v in (bags or {}).items()}
        vocab = dict(vocab or {})
        for name, codes in fields.items():
            size = int(codes.max()) + 1 if codes.numel() else 1
            vocab.setdefault(name, tuple(str(c) for c in range(size)))
        for name, bag in bags.items():
            vocab.setdefault(name, tuple(str(c) for c in range(bag.shape[-1])))
        return cls(kind, fields, bags, vocab)

    def __repr__(self) -> str:
        f = ", ".join(f"{k} ({len(self.vocab[k])} values)" for k in self.fields)
        b = ", ".join(f"{k} ({len(self.vocab[k])} values)" for k in self.bags)
        return f"Features({self.kind}: {len(self)} rows, fields {f or '-'}, bags {b or '-'})"

    def table(self) -> pd.DataFrame:
        """One row per encoded index, codes decoded to names (bags as tuples): for looking, not for models."""
        out = {k: np.asarray(self.vocab[k])[v.numpy()] for k, v in self.fields.items()}
        for k, bag in self.bags.items():
            names = np.asarray(self.vocab[k])
            out[k] = [tuple(names[row.numpy().astype(bool)]) for row in bag]
        return pd.DataFrame(out)


def _metadata(source, attribute: str) -> pd.DataFrame | None:
    return getattr(source, attribute) if isinstance(source, Dataset) else source


def _align(table: pd.DataFrame, id_map: IdMap, id_column: str) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows of ``table`` in encoded-index order (missing ids as NaN rows) and which indices were found."""
    if id_column not in table:
        raise ValueError(f"the {id_map.name} table has no {id_column!r} column; its columns are {list(table.columns)}")
    table = table.drop_duplicates(id_column).set_index(id_column)
    found = np.isin(id_map.ids, table.index.to_numpy())
    if not found.any():
        raise ValueError(
            f"none of the {len(id_map)} encoded {id_map.name} ids appear in the {id_map.name} table "
            f"(e.g. {id_map.ids[:3].tolist()} vs {table.index[:3].tolist()}): check that both use the same raw ids"
        )
    return table.reindex(id_map.ids), found


def _codes(values: pd.Series, vocabulary: Sequence[str]) -> torch.Tensor:
    """Codes of categorical values in ``(UNKNOWN, *vocabulary)``; missing and unlisted values get 0."""
    lookup = {v: c for c, v in enumerate(vocabulary, start=1)}
    return torch.tensor([lookup.get(v, 0) for v in values.astype(object)], dtype=torch.long)


def _category_field(values: pd.Series) -> tuple[torch.Tensor, tuple[str, ...]]:
    vocabulary = sorted({str(v) for v in values.dropna()})
    return _codes(values.map(lambda v: str(v) if pd.notna(v) else None), vocabulary), (UNKNOWN, *vocabulary)


def year_buckets(years: pd.Series, edges: Sequence[int] = YEAR_EDGES) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Release years as bucket codes: 0 unknown, 1 before ``edges[0]``, then one bucket per edge."""
    edges = list(edges)
    if edges != sorted(set(edges)) or not edges:
        raise ValueError(f"year edges must be strictly increasing, got {edges}")
    names = [f"<{edges[0]}"] + [
        f"{a}" if b == a + 1 else f"{a}-{b - 1}" for a, b in zip(edges, edges[1:], strict=False)
    ] + [f"{edges[-1]}+"]  # fmt: skip
    y = pd.to_numeric(years, errors="coerce").to_numpy(dtype=np.float64)
    codes = np.where(np.isnan(y), 0, np.searchsorted(edges, np.nan_to_num(y), side="right") + 1)
    return torch.tensor(codes, dtype=torch.long), (UNKNOWN, *names)


def age_groups(ages: pd.Series) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Ages as ML-1M's age-group codes; years (ML-100K) are bucketed, ML-1M's labels kept."""
    labels = [label for _, label in AGE_GROUPS]
    numeric = pd.to_numeric(ages, errors="coerce")
    if numeric.notna().any():  # ages in years: bucket them
        lows = [low for low, _ in AGE_GROUPS]
        index = np.searchsorted(lows, numeric.fillna(-1).to_numpy(), side="right") - 1
        ages = pd.Series(np.where(numeric.notna() & (index >= 0), np.asarray(labels)[index.clip(0)], None))
    return _codes(ages, labels), (UNKNOWN, *labels)


def genre_bag(genres: pd.Series) -> tuple[torch.Tensor, tuple[str, ...]]:
    """Genres (a tuple of names per row, or a "|"-separated string) as a 0/1 multi-hot matrix (n, n_genres)."""
    rows = [tuple(g.split("|")) if isinstance(g, str) else tuple(g) if isinstance(g, (tuple, list)) else ()
            for g in genres]  # fmt: skip
    vocabulary = tuple(sorted({g for row in rows for g in row if g}))
    column = {g: j for j, g in enumerate(vocabulary)}
    bag = torch.zeros(len(rows), len(vocabulary), dtype=torch.long)  # (n, n_genres)
    for r, row in enumerate(rows):
        bag[r, [column[g] for g in row if g]] = 1
    return bag, vocabulary


def item_features(source: Dataset | pd.DataFrame | None, items: IdMap, year_edges=YEAR_EDGES) -> Features | None:
    """Genre bag and release-year bucket of every encoded item, or ``None`` when there is no item metadata.

    Parameters
    ----------
    source : Dataset or DataFrame or None
        A :class:`~recsys_tutorial.data.Dataset` (its ``items`` table is used) or an item table with
        ``item_id`` and any of ``genres`` (tuple of names or "a|b" string) and ``year``.
    items : IdMap
        The item encoding (from :func:`~recsys_tutorial.splits.encode_ids`): row r describes item index r.
        Ids missing from the table get the unknown year and no genre.
    year_edges : sequence of int
        First years of the release-year buckets (:data:`YEAR_EDGES`).
    """
    table = _metadata(source, "items")
    if table is None or not {"genres", "year"} & set(table.columns):
        return None
    aligned, _ = _align(table, items, "item_id")
    fields, bags, vocab = {}, {}, {}
    if "year" in aligned:
        fields["year"], vocab["year"] = year_buckets(aligned["year"], year_edges)
    if "genres" in aligned:
        bags["genres"], vocab["genres"] = genre_bag(aligned["genres"])
    return Features("item", fields, bags, vocab)


def user_features(source: Dataset | pd.DataFrame | None, users: IdMap) -> Features | None:
    """Age group, gender and occupation of every encoded user, or ``None`` when there are no demographics.

    ``source`` is a :class:`~recsys_tutorial.data.Dataset` (its ``users`` table) or a table with ``user_id``
    and any of ``age`` (years, or ML-1M's group labels), ``gender`` and ``occupation``. Row r describes user
    index r of ``users``; ids missing from the table get code 0 (unknown) in every field.
    """
    table = _metadata(source, "users")
    wanted = [c for c in ("age", "gender", "occupation") if table is not None and c in table]
    if not wanted:
        return None
    aligned, _ = _align(table, users, "user_id")
    fields, vocab = {}, {}
    for name in wanted:
        fields[name], vocab[name] = age_groups(aligned[name]) if name == "age" else _category_field(aligned[name])
    return Features("user", fields, {}, vocab)


def require_features(features: Features | None, kind: str, who: str, needs: Sequence[str] = ()) -> Features:
    """``features`` if it is there (with the features ``needs`` names), else a ``ValueError`` saying what to do."""
    if features is None:
        table = "items" if kind == "item" else "users"
        raise ValueError(
            f"{who} needs {kind} features, but none were given: the dataset has no {table} table "
            f"(Dataset.{table} is None) or it lacks the columns {kind}_features reads. Build them with "
            f"recsys_tutorial.data.features.{kind}_features(dataset, id_map), or use a model that needs none."
        )
    if features.kind != kind:
        raise ValueError(f"{who} needs {kind} features, got {features.kind} features")
    absent = [n for n in needs if n not in features.names]
    if absent:
        raise ValueError(f"{who} needs the {kind} feature(s) {absent}; these features have {list(features.names)}")
    return features
