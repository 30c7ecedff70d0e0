import json
from pathlib import Path

import nbformat
import pytest

from recsys_tutorial import results
from recsys_tutorial.results import README, Recorder, _stamp_notebooks, render_readme, stamp_runtime

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_recorder_writes_json_atomically(tmp_path):
    rec = Recorder("99_example", directory=tmp_path)
    assert rec.log("ndcg", 0.12345, "NDCG@10") == 0.12345
    payload = json.loads((tmp_path / "99_example.json").read_text())
    assert payload["metrics"]["ndcg"] == {"label": "NDCG@10", "value": 0.12345, "fmt": ".3f"}
    assert [p.name for p in tmp_path.iterdir()] == ["99_example.json"]  # no temporary file left behind
    with pytest.raises(ValueError, match="should look like"):
        Recorder("Example Notebook", directory=tmp_path)


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    rec = Recorder("99_example", directory=tmp_path)
    rec.log("ndcg", 0.5, "NDCG@10")
    before = (tmp_path / "99_example.json").read_text()

    def half_written_dump(payload, f, **kwargs):
        f.write('{"notebook": ')
        raise OSError("disk full")

    monkeypatch.setattr(results.json, "dump", half_written_dump)
    with pytest.raises(OSError, match="disk full"):
        rec.log("ndcg", 0.9, "NDCG@10")
    assert (tmp_path / "99_example.json").read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["99_example.json"]


def test_recorder_keeps_the_measured_run_times_when_it_logs_again(tmp_path):
    old = {"notebook": "99_example", "runtime_s": 42.0, "runtime_quick_s": 7.5, "metrics": {}}
    (tmp_path / "99_example.json").write_text(json.dumps(old))
    Recorder("99_example", directory=tmp_path).log("ndcg", 0.25, "NDCG@10")
    payload = json.loads((tmp_path / "99_example.json").read_text())
    assert (payload["runtime_s"], payload["runtime_quick_s"]) == (42.0, 7.5)
    assert payload["metrics"]["ndcg"]["value"] == 0.25


def test_render_readme_fills_the_marked_blocks(tmp_path):
    Recorder("99_example", directory=tmp_path).log("ndcg", 0.12345, "NDCG@10")
    text = "".join(f"<!-- results:{b} -->\nold\n<!-- /results:{b} -->\n" for b in ("notebooks", "metrics"))
    out = render_readme(text, tmp_path)
    assert "| 99_example | NDCG@10 | 0.123 |" in out and "\nold\n" not in out
    with pytest.raises(ValueError, match="markers"):
        render_readme("no markers", tmp_path)


def test_readme_tables_match_the_recorded_results():
    """Nothing in the README's tables is typed by hand: they are exactly what the recorded results render to."""
    text = README.read_text(encoding="utf-8")
    assert render_readme(text, ROOT / "notebooks" / "results") == text, "run `make readme` (or `make results`)"


def test_run_time_line_is_stamped_from_the_recorded_results():
    opening = "# 99 · Example\n> summary\n\n**Run time**: see the README.\n\nMore text."
    payload = {"runtime_s": 130.4, "runtime_quick_s": 21.0}
    stamped = stamp_runtime(opening, payload, "2-core x86_64 CPU, no GPU")
    expected = "**Run time**: 2.2 min in full, 21 s with `QUICK`, measured by `make results` on a 2-core x86_64 CPU"
    assert expected in stamped and stamped.endswith("\n\nMore text.") and "see the README" not in stamped
    assert "not measured yet" in stamp_runtime(opening, {}, "any machine")
    with pytest.raises(ValueError, match=r"\*\*Run time\*\*"):
        stamp_runtime("# 99 · Example\n> summary", payload, "any machine")


def test_notebooks_open_with_their_measured_run_time():
    assert _stamp_notebooks(ROOT / "notebooks" / "results", write=False) == [], "run `make readme`"


def test_every_notebook_has_a_recorded_result_file():
    for path in NOTEBOOKS:
        assert (ROOT / "notebooks" / "results" / f"{path.stem}.json").is_file(), f"run `make results` for {path.name}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_stored_stripped_and_well_formed(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: strip outputs before committing"
    first = nb.cells[0]
    assert first.cell_type == "markdown" and first.source.startswith(f"# {path.stem[:2]}")
    assert any(line.startswith("> ") for line in first.source.splitlines()), "first cell needs a '> ' summary line"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "recsys_tutorial" in code and "Recorder(" in code
