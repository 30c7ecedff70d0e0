import hashlib
import io
import shutil
import urllib.request
import zipfile

import pandas as pd
import pytest

from recsys_tutorial.data import movielens
from recsys_tutorial.data.movielens import DataIntegrityError, load_fold, load_movielens


def test_ml100k_offline_sizes_and_types(ml100k_dir, no_network):
    ml = load_movielens("100k", root=ml100k_dir.parent, download=True)  # files present: no download
    assert len(ml.ratings) == 100_000
    assert ml.n_users == 943 and ml.n_items == 1682
    assert ml.ratings["timestamp"].dt.tz is not None and str(ml.ratings["timestamp"].dt.tz) == "UTC"
    assert list(ml.ratings.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert len(ml.items) == 1682 and len(ml.users) == 943
    toy_story = ml.items.set_index("item_id").loc[1]
    assert toy_story["title"] == "Toy Story (1995)" and toy_story["year"] == 1995
    assert toy_story["genres"] == ("Animation", "Children's", "Comedy")


def test_latin1_titles_are_decoded(ml100k_dir):
    titles = load_movielens("100k", root=ml100k_dir.parent).items["title"]
    assert titles.str.contains("é").any()  # e.g. accented foreign titles, Latin-1 in the raw file


def test_canonical_fold_sizes(ml100k_dir):
    base, test = load_fold(1, root=ml100k_dir.parent)
    assert (len(base), len(test)) == (80_000, 20_000)
    with pytest.raises(ValueError, match="folds 1-5"):
        load_fold(6, root=ml100k_dir.parent)


@pytest.fixture
def corruptible_copy(ml100k_dir, tmp_path):
    folder = tmp_path / "ml-100k"
    shutil.copytree(ml100k_dir, folder)
    return folder


def test_one_flipped_byte_gives_a_clear_error(corruptible_copy, no_network):
    data = bytearray((corruptible_copy / "u.data").read_bytes())
    data[1000] ^= 0x01
    (corruptible_copy / "u.data").write_bytes(bytes(data))
    with pytest.raises(DataIntegrityError) as err:
        load_movielens("100k", root=corruptible_copy.parent)
    message = str(err.value)
    assert "u.data" in message
    assert movielens.ML100K_SHA256["u.data"] in message  # the expected value
    assert "https://files.grouplens.org/datasets/movielens/ml-100k.zip" in message  # the official address
    assert str(corruptible_copy) in message  # where to put the files


def test_missing_files_offline_name_the_fix(tmp_path, no_network):
    with pytest.raises(DataIntegrityError, match="ml-100k.zip") as err:
        load_movielens("100k", root=tmp_path, download=False)
    assert str(tmp_path) in str(err.value)


def test_missing_single_file_is_named(corruptible_copy, no_network):
    (corruptible_copy / "u.item").unlink()
    with pytest.raises(DataIntegrityError, match="lacks u.item"):
        load_movielens("100k", root=corruptible_copy.parent, download=False)


def _zip_of(folder_name: str, files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        for name, content in files.items():
            zf.writestr(f"{folder_name}/{name}", content)
    return buffer.getvalue()


class _FakeResponse(io.BytesIO):
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


ML1M_FILES = {
    "ratings.dat": b"1::10::5::978300760\n1::20::3::978302109\n2::10::4::978301968\n",
    "movies.dat": "10::Amélie (2001)::Comedy|Romance\n20::Heat (1995)::Action|Crime|Thriller\n".encode("latin-1"),
    "users.dat": b"1::F::1::10::48067\n2::M::56::16::70072\n",
}


def test_ml1m_parser_on_a_tiny_archive(tmp_path, monkeypatch, no_network):
    archive = _zip_of("ml-1m", ML1M_FILES)
    (tmp_path / "ml-1m.zip").write_bytes(archive)
    monkeypatch.setitem(movielens.ARCHIVE_MD5, "1m", hashlib.md5(archive).hexdigest())
    ml = load_movielens("1m", root=tmp_path, download=False)
    assert len(ml.ratings) == 3 and ml.ratings["rating"].tolist() == [5.0, 3.0, 4.0]
    assert ml.ratings["timestamp"].iloc[0] == pd.Timestamp(978300760, unit="s", tz="UTC")
    assert ml.items["title"].tolist() == ["Amélie (2001)", "Heat (1995)"]
    assert ml.items["year"].tolist() == [2001, 1995]
    assert ml.items["genres"].iloc[1] == ("Action", "Crime", "Thriller")
    assert ml.users["age"].astype(str).tolist() == ["Under 18", "56+"]
    assert ml.users["occupation"].astype(str).tolist() == ["K-12 student", "self-employed"]


def test_download_verifies_md5_and_writes_atomically(tmp_path, monkeypatch):
    archive = _zip_of("ml-1m", ML1M_FILES)
    monkeypatch.setitem(movielens.ARCHIVE_MD5, "1m", hashlib.md5(archive).hexdigest())
    calls = []

    def fake_urlopen(url, timeout):
        calls.append(url)
        return _FakeResponse(archive)

    monkeypatch.setattr(urllib.request, "urlopen", fake_urlopen)
    ml = load_movielens("1m", root=tmp_path)
    assert calls == ["https://files.grouplens.org/datasets/movielens/ml-1m.zip"]
    assert len(ml.ratings) == 3
    load_movielens("1m", root=tmp_path)  # second call reuses the verified cache
    assert len(calls) == 1


def test_corrupted_download_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: _FakeResponse(b"not the real zip"))
    with pytest.raises(DataIntegrityError, match="MD5"):
        load_movielens("100k", root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_download_leaves_nothing(tmp_path, monkeypatch):
    class Broken(_FakeResponse):
        def read(self, *args):
            raise ConnectionResetError("connection dropped")

    monkeypatch.setattr(urllib.request, "urlopen", lambda url, timeout: Broken(b""))
    with pytest.raises(DataIntegrityError, match="Could not download"):
        load_movielens("100k", root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_unknown_variant():
    with pytest.raises(ValueError, match="unknown MovieLens variant"):
        load_movielens("20m")
