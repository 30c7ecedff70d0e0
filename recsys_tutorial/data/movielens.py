"""MovieLens loader: download once, verify, cache in ``data/``, return typed frames.

GroupLens' licence forbids redistributing MovieLens, so the project never ships the files: the first
call downloads the official zip over https, checks it against the MD5 that GroupLens publishes beside
it, and extracts it into the data folder (``$RECSYS_TUTORIAL_DATA``, else the checkout's ``data/``).
An already-extracted ``ml-100k`` folder is verified file by file against SHA-256 values kept here and
used with no network access at all.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from .dataset import Dataset

__all__ = ["MovieLens", "DataIntegrityError", "data_dir", "load_movielens", "load_fold"]

BASE_URL = "https://files.grouplens.org/datasets/movielens"

# MD5 of the official archives, as GroupLens publishes them beside the zips.
ARCHIVE_MD5 = {
    "100k": "0e33842e24a9c977be4e0107933c0723",
    "1m": "c4d9eecfca2ab87c1945afe126590906",
}

# SHA-256 of the pristine extracted ml-100k files (sha256sum -c from inside data/ml-100k/).
ML100K_SHA256 = {
    "README": "4883b8cf340ed0059971b33f56ad3adc88a40792108ebca3d24aafc4c82e8b52",
    "u.data": "06416e597f82b7342361e41163890c81036900f418ad91315590814211dca490",
    "u.genre": "9757e0d3e6b298159a80dd48eaf938114690e911e39af97a76949ef1663610bb",
    "u.info": "5b0a40b2e47a729ee6203063f6dcf8790c2e63f5a18663e6ee318a72c5f3c27b",
    "u.item": "553841ebc7de3a0fd0d6b62a204ea30c1e651aacfb2814c7a6584ac52f2c5701",
    "u.occupation": "cd5fbec9afe345d993a62fc7817df1a4a9079c4feb267b3118763b8fd942137d",
    "u.user": "f120e114da2e8cf314fd28f99417c94ae9ddf1cb6db8ce0e4b5995d40e90e62c",
    "u1.base": "ce253ec86c448b44fb3ba9a30d12dcfc2e9210cbde71efada3730c22e9ac212a",
    "u1.test": "18c6014a4b2c7324f250a63f8904a7b16b2b19f911129e346141507b0cbac950",
    "u2.base": "6c06f0b5df4b256da1a994f3ac66edc8da4d3f09bc9282df6b14d893366d703e",
    "u2.test": "4de658d1e04ed9104629509a2e2528fce833ac8e048280183f1df167632038c3",
    "u3.base": "afdc155c291c6edc41c0407e39d7462eb98d341e064f0b0a12175b80b3c4af5d",
    "u3.test": "0f548b51c78327de4c156461d3e430b7e5579fe2b5681586a59416e48fd35f6d",
    "u4.base": "219f0f4d40dfe9c5141d425f53fa91ee23ed275f14e280bbf1b50117afb064ca",
    "u4.test": "7c02ad0a1e7ab1083c8b9d4b627203a051dd7b5eab46d99fa44de33470de8db9",
    "u5.base": "a9574e59ce961eec2121627760b6e9b0974ce1637b3fe69ac32cb14a4bfab485",
    "u5.test": "351cc52e0d15b6c721466276fc24671d40936899e3d01fadeaf312915b8c5634",
    "ua.base": "67b5bcdb380c29f85d56a012ecd88612ae020f30a6730d117a334ee8203b91f2",
    "ua.test": "d0497e202417720f57a184ec8c66be2d1afa4ff41bb53787c57b28d6bf79bc42",
    "ub.base": "237254d253b6ad7de84f919d041055428646254f34ed8f562703c899430cd881",
    "ub.test": "d54a72d05730d5892062734b2bec73e976f9b713d18c828a18b968d6cce442da",
}

ML100K_GENRES = (
    "unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
    "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
    "Thriller", "War", "Western",
)  # fmt: skip

# The files each variant's loader reads, relative to its extracted folder.
REQUIRED_FILES = {
    "100k": tuple(ML100K_SHA256),
    "1m": ("ratings.dat", "movies.dat", "users.dat"),
}

ML1M_AGES = {1: "Under 18", 18: "18-24", 25: "25-34", 35: "35-44", 45: "45-49", 50: "50-55", 56: "56+"}
ML1M_OCCUPATIONS = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student",
    "customer service", "doctor/health care", "executive/managerial", "farmer", "homemaker",
    "K-12 student", "lawyer", "programmer", "retired", "sales/marketing", "scientist",
    "self-employed", "technician/engineer", "tradesman/craftsman", "unemployed", "writer",
)  # fmt: skip


class DataIntegrityError(RuntimeError):
    """A MovieLens file is missing, corrupted, or could not be fetched."""


@dataclass(frozen=True)
class MovieLens(Dataset):
    """The three MovieLens tables, a :class:`~recsys_tutorial.data.dataset.Dataset` that always has metadata.

    Attributes
    ----------
    ratings : DataFrame
        ``user_id, item_id, rating, timestamp`` (timestamp as a UTC ``datetime64``), raw GroupLens ids.
    items : DataFrame
        ``item_id, title, year, genres`` (``genres`` is a tuple of genre names).
    users : DataFrame
        Demographics: ``user_id, age, gender, occupation, zip_code``.
    """

    # Redeclared without a default: MovieLens always ships both tables.
    items: pd.DataFrame
    users: pd.DataFrame


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """Where MovieLens is cached: ``path``, else ``$RECSYS_TUTORIAL_DATA``, else the checkout's ``data/``."""
    if path is not None:
        return Path(path)
    if env := os.environ.get("RECSYS_TUTORIAL_DATA"):
        return Path(env)
    checkout = Path(__file__).resolve().parents[2] / "data"
    if checkout.is_dir():
        return checkout
    return Path.cwd() / "data"


def _digest(path: Path, algorithm: str) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _where_to_put(variant: str, root: Path) -> str:
    return (
        f"Download {BASE_URL}/ml-{variant}.zip by hand and either place the zip at "
        f"{root / f'ml-{variant}.zip'} or extract it so that the files lie in {root / f'ml-{variant}'}/ "
        "(or point $RECSYS_TUTORIAL_DATA at a folder that holds them)."
    )


def verify_ml100k(folder: Path) -> None:
    """Check every extracted ml-100k file against its SHA-256; raise naming the first bad one."""
    for name, expected in ML100K_SHA256.items():
        path = folder / name
        if not path.is_file():
            raise DataIntegrityError(
                f"MovieLens-100K file {path} is missing (expected SHA-256 {expected}). "
                + _where_to_put("100k", folder.parent)
            )
        actual = _digest(path, "sha256")
        if actual != expected:
            raise DataIntegrityError(
                f"MovieLens-100K file {path} is corrupted: SHA-256 is {actual}, expected {expected}. "
                f"Delete {folder} and let the loader download a fresh copy, or restore the file. "
                + _where_to_put("100k", folder.parent)
            )


def _download(url: str, dest: Path, expected_md5: str, timeout: float = 60.0) -> None:
    """Fetch ``url`` to ``dest`` atomically: a temporary file in the same folder, verified, then renamed."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            shutil.copyfileobj(response, out)
        actual = _digest(tmp, "md5")
        if actual != expected_md5:
            raise DataIntegrityError(
                f"Downloaded {url} has MD5 {actual}, expected {expected_md5}; nothing was kept. "
                "Try again, or download it by hand and check it against the MD5 GroupLens publishes."
            )
        os.replace(tmp, dest)
    except (urllib.error.URLError, OSError) as err:
        raise DataIntegrityError(
            f"Could not download {url} ({err}). " + _where_to_put(dest.stem.removeprefix("ml-"), dest.parent)
        ) from err
    finally:
        tmp.unlink(missing_ok=True)


def _extract(archive: Path, folder: Path) -> None:
    """Unzip into a temporary sibling folder, then rename it into place (never half-extracted)."""
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(staging)
        inner = staging / folder.name
        if not inner.is_dir():
            raise DataIntegrityError(f"{archive} does not contain the folder {folder.name}/")
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(inner, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _verified_archive(variant: str, root: Path, download: bool, missing: list[str]) -> Path:
    archive = root / f"ml-{variant}.zip"
    expected = ARCHIVE_MD5[variant]
    if archive.is_file():
        actual = _digest(archive, "md5")
        if actual == expected:
            return archive
        raise DataIntegrityError(
            f"{archive} has MD5 {actual}, expected {expected}. Delete it so the loader can fetch "
            "a fresh copy. " + _where_to_put(variant, root)
        )
    folder = root / f"ml-{variant}"
    what = f"{folder} lacks {', '.join(missing[:5])}" if missing else f"{folder} is not there yet"
    if not download:
        raise DataIntegrityError(
            f"MovieLens-{variant.upper()} is not available offline: {what}, and downloading is switched off. "
            + _where_to_put(variant, root)
        )
    _download(f"{BASE_URL}/ml-{variant}.zip", archive, expected)
    return archive


def ensure_movielens(variant: str = "100k", root: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Return the verified, extracted folder of a MovieLens variant, fetching it on first use.

    An extracted folder that holds every required file is used as it is (no network): ml-100k is
    checked against SHA-256 values kept in the package; ml-1m is trusted only while the zip it was
    extracted from sits beside it and matches the published MD5.
    """
    if variant not in ARCHIVE_MD5:
        raise ValueError(f"unknown MovieLens variant {variant!r}: choose one of {sorted(ARCHIVE_MD5)}")
    root = data_dir(root)
    folder = root / f"ml-{variant}"
    missing = [name for name in REQUIRED_FILES[variant] if not (folder / name).is_file()]
    if variant == "100k":
        if missing:
            _extract(_verified_archive(variant, root, download, missing), folder)
        verify_ml100k(folder)
        return folder
    archive = _verified_archive(variant, root, download, missing)
    if missing:
        _extract(archive, folder)
    return folder


def _year_from_title(titles: pd.Series) -> pd.Series:
    return titles.str.extract(r"\((\d{4})\)\s*$", expand=False).astype("Int64")


def _read_100k(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    ratings = read_ratings_file(folder / "u.data")
    genre_cols = [f"g{i}" for i in range(len(ML100K_GENRES))]
    raw = pd.read_csv(
        folder / "u.item", sep="|", header=None, encoding="latin-1",
        names=["item_id", "title", "release_date", "video_release_date", "imdb_url", *genre_cols],
    )  # fmt: skip
    flags = raw[genre_cols].to_numpy(dtype=bool)
    genres = [tuple(g for g, on in zip(ML100K_GENRES, row, strict=True) if on) for row in flags]
    items = pd.DataFrame(
        {
            "item_id": raw["item_id"].astype("int64"),
            "title": raw["title"].astype("string"),
            "year": _year_from_title(raw["title"].fillna("").astype(str)),
            "genres": pd.Series(genres, dtype=object),
        }
    )
    users = pd.read_csv(
        folder / "u.user", sep="|", header=None, names=["user_id", "age", "gender", "occupation", "zip_code"],
        dtype={"user_id": "int64", "age": "int64", "gender": "category", "occupation": "category",
               "zip_code": "string"},
    )  # fmt: skip
    return ratings, items, users


def read_ratings_file(path: Path) -> pd.DataFrame:
    """Read one tab-separated ml-100k ratings file (``u.data``, ``u1.base`` ...) into a typed frame."""
    df = pd.read_csv(path, sep="\t", header=None, names=["user_id", "item_id", "rating", "timestamp"], dtype="int64")
    df["timestamp"] = pd.to_datetime(df["timestamp"], unit="s", utc=True)
    df["rating"] = df["rating"].astype("float32")
    return df


def _read_double_colon(path: Path, names: list[str]) -> pd.DataFrame:
    # ml-1m separates fields with "::"; swapping it for a tab lets pandas use its fast C parser.
    text = path.read_bytes().decode("latin-1").replace("::", "\t")
    return pd.read_csv(io.StringIO(text), sep="\t", header=None, names=names, quoting=3)


def _read_1m(folder: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    ratings = _read_double_colon(folder / "ratings.dat", ["user_id", "item_id", "rating", "timestamp"])
    ratings = ratings.astype({"user_id": "int64", "item_id": "int64", "timestamp": "int64"})
    ratings["rating"] = ratings["rating"].astype("float32")
    ratings["timestamp"] = pd.to_datetime(ratings["timestamp"], unit="s", utc=True)
    movies = _read_double_colon(folder / "movies.dat", ["item_id", "title", "genres"])
    items = pd.DataFrame(
        {
            "item_id": movies["item_id"].astype("int64"),
            "title": movies["title"].astype("string"),
            "year": _year_from_title(movies["title"].astype(str)),
            "genres": pd.Series([tuple(g.split("|")) for g in movies["genres"].astype(str)], dtype=object),
        }
    )
    raw = _read_double_colon(folder / "users.dat", ["user_id", "gender", "age", "occupation", "zip_code"])
    users = pd.DataFrame(
        {
            "user_id": raw["user_id"].astype("int64"),
            "age": raw["age"].map(ML1M_AGES).astype("category"),
            "gender": raw["gender"].astype("category"),
            "occupation": raw["occupation"].map(dict(enumerate(ML1M_OCCUPATIONS))).astype("category"),
            "zip_code": raw["zip_code"].astype("string"),
        }
    )
    return ratings, items, users


def load_movielens(variant: str = "100k", root: str | os.PathLike | None = None, download: bool = True) -> MovieLens:
    """Load MovieLens-100K or -1M as typed pandas frames, downloading and verifying on first use.

    Parameters
    ----------
    variant : {"100k", "1m"}
    root : path, optional
        Folder that holds (or will hold) ``ml-<variant>/``. Defaults to :func:`data_dir`.
    download : bool
        Fetch the official zip when the files are missing. With ``False`` a missing file raises.

    Raises
    ------
    DataIntegrityError
        A file is missing offline, or its checksum does not match; the message names the file, the
        expected value, the official address and where to put the files.

    References
    ----------
    .. [1] F. M. Harper and J. A. Konstan, "The MovieLens Datasets: History and Context",
       ACM TiiS 5(4), 2015.
    """
    folder = ensure_movielens(variant, root, download)
    reader = _read_100k if variant == "100k" else _read_1m
    ratings, items, users = reader(folder)
    return MovieLens(f"ml-{variant}", ratings, items, users)


def load_fold(fold: int | str, root: str | os.PathLike | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The canonical ml-100k train/test files ``u{fold}.base`` / ``u{fold}.test`` (fold 1-5, "a" or "b")."""
    if str(fold) not in {"1", "2", "3", "4", "5", "a", "b"}:
        raise ValueError(f"fold {fold!r} does not exist: MovieLens-100K ships folds 1-5, 'a' and 'b'")
    folder = ensure_movielens("100k", root)
    return read_ratings_file(folder / f"u{fold}.base"), read_ratings_file(folder / f"u{fold}.test")
