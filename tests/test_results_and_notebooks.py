import json
from pathlib import Path

import nbformat
import pytest

from recsys_tutorial import results
from recsys_tutorial.results import (
    README,
    Recorder,
    _stamp_notebooks,
    promote,
    render_readme,
    run_notebooks,
    stamp_runtime,
)

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))


def test_recorder_logs_to_a_hidden_partial_file_atomically(tmp_path):
    rec = Recorder("99_example", directory=tmp_path)
    assert rec.log("ndcg", 0.12345, "NDCG@10") == 0.12345
    payload = json.loads((tmp_path / ".99_example.json.partial").read_text())
    assert payload["metrics"]["ndcg"] == {"label": "NDCG@10", "value": 0.12345, "fmt": ".3f"}
    # only the partial file: the results file appears when `results run` promotes a complete run
    assert [p.name for p in tmp_path.iterdir()] == [".99_example.json.partial"]
    with pytest.raises(ValueError, match="should look like"):
        Recorder("Example Notebook", directory=tmp_path)


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    rec = Recorder("99_example", directory=tmp_path)
    rec.log("ndcg", 0.5, "NDCG@10")
    before = rec.path.read_text()

    def half_written_dump(payload, f, **kwargs):
        f.write('{"notebook": ')
        raise OSError("disk full")

    monkeypatch.setattr(results.json, "dump", half_written_dump)
    with pytest.raises(OSError, match="disk full"):
        rec.log("ndcg", 0.9, "NDCG@10")
    assert rec.path.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == [".99_example.json.partial"]


def test_promote_keeps_the_quick_run_time_and_a_quick_run_changes_nothing_else(tmp_path):
    old = {"notebook": "99_example", "runtime_s": 42.0, "runtime_quick_s": 7.5, "metrics": {}}
    (tmp_path / "99_example.json").write_text(json.dumps(old))
    Recorder("99_example", directory=tmp_path).log("ndcg", 0.25, "NDCG@10")
    assert json.loads((tmp_path / "99_example.json").read_text()) == old  # logging never touches the results
    promote("99_example", tmp_path, 50.04, machine="4-core arm64 CPU, no GPU", date="2026-12-01")
    payload = json.loads((tmp_path / "99_example.json").read_text())
    assert (payload["runtime_s"], payload["runtime_quick_s"]) == (50.0, 7.5)
    assert (payload["machine"], payload["date"]) == ("4-core arm64 CPU, no GPU", "2026-12-01")
    assert payload["metrics"]["ndcg"]["value"] == 0.25
    assert not (tmp_path / ".99_example.json.partial").exists()
    Recorder("99_example", directory=tmp_path).log("ndcg", 0.99, "NDCG@10")  # a QUICK run's smaller numbers
    promote("99_example", tmp_path, 3.0, quick=True)
    quick = json.loads((tmp_path / "99_example.json").read_text())
    assert quick == {**payload, "runtime_quick_s": 3.0}


def test_render_readme_fills_the_marked_blocks(tmp_path):
    Recorder("99_example", directory=tmp_path).log("ndcg", 0.12345, "NDCG@10")
    promote("99_example", tmp_path, 10.0, machine="2-core x86_64 CPU, no GPU", date="2026-11-30")
    text = "".join(f"<!-- results:{b} -->\nold\n<!-- /results:{b} -->\n" for b in ("notebooks", "metrics"))
    out = render_readme(text, tmp_path)
    assert "| 99_example | NDCG@10 | 0.123 | A |" in out and "\nold\n" not in out
    assert "- **A** (notebooks 99): 2-core x86_64 CPU, no GPU, on 2026-11-30." in out
    with pytest.raises(ValueError, match="markers"):
        render_readme("no markers", tmp_path)


def test_each_notebook_keeps_the_machine_it_was_measured_on(tmp_path):
    """Re-running one notebook on another machine relabels its numbers only, not every number in the README."""
    for name, machine, date in [
        ("97_first", "2-core x86_64 CPU, no GPU, Python 3.11.7, torch 2.13.0+cpu", "2026-11-22"),
        ("98_second", "16-core x86_64 CPU, NVIDIA H200, Python 3.11.7, torch 2.13.0", "2026-12-01"),
    ]:
        metrics = {"m": {"label": f"metric of {name}", "value": 0.5, "fmt": ".2f"}}
        payload = {"notebook": name, "runtime_s": 10.0, "machine": machine, "date": date, "metrics": metrics}
        (tmp_path / f"{name}.json").write_text(json.dumps(payload))
    table = results.metrics_table(tmp_path)
    assert "| 97_first | metric of 97_first | 0.50 | A |" in table
    assert "| 98_second | metric of 98_second | 0.50 | B |" in table
    assert "- **A** (notebooks 97): 2-core x86_64 CPU, no GPU, Python 3.11.7, torch 2.13.0+cpu, on 2026-11-22." in table
    assert (
        "- **B** (notebooks 98): 16-core x86_64 CPU, NVIDIA H200, Python 3.11.7, torch 2.13.0, on 2026-12-01." in table
    )


def test_committed_results_name_their_own_machine_and_date():
    folder = ROOT / "notebooks" / "results"
    assert not (folder / "machine.json").exists(), "the machine is recorded per notebook, not for the whole series"
    for path in sorted(folder.glob("[0-9][0-9]_*.json")):
        payload = json.loads(path.read_text())
        assert payload.get("machine") and payload.get("date"), f"{path.name} lacks its machine or date"
        assert not path.name.startswith("."), "partial files are never committed"


@pytest.fixture
def scratch_build(tmp_path, monkeypatch):
    """Executed copies and QUICK scratch results go to a temporary build folder."""
    from recsys_tutorial import series

    build = tmp_path / "build"
    monkeypatch.setattr(series, "BUILD", build)
    monkeypatch.setattr(results, "BUILD", build)
    monkeypatch.setattr(results, "describe_machine", lambda: "1-core test CPU, no GPU")
    return build


def _notebook(path: Path, name: str, fail: bool) -> Path:
    cells = [
        nbformat.v4.new_code_cell(f"from recsys_tutorial.results import Recorder\nrec = Recorder({name!r})"),
        nbformat.v4.new_code_cell('rec.log("ndcg", 0.75, "NDCG@10")'),
    ]
    if fail:
        cells.append(nbformat.v4.new_code_cell('raise RuntimeError("stopped half way")'))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path / f"{name}.ipynb")
    return path / f"{name}.ipynb"


def test_a_notebook_failing_half_way_keeps_its_committed_results(tmp_path, scratch_build):
    """The failing notebook's partial metrics are dropped and its file kept; the others still run and promote."""
    committed = tmp_path / "results"
    committed.mkdir()
    old = {"notebook": "97_breaks", "runtime_s": 5.0, "machine": "old CPU", "date": "2026-11-22", "metrics": {}}
    (committed / "97_breaks.json").write_text(json.dumps(old))
    paths = [_notebook(tmp_path, "97_breaks", fail=True), _notebook(tmp_path, "98_works", fail=False)]
    failed = run_notebooks(paths, committed)
    assert len(failed) == 1 and failed[0].startswith("97_breaks.ipynb: RuntimeError: stopped half way")
    assert json.loads((committed / "97_breaks.json").read_text()) == old
    assert sorted(p.name for p in committed.iterdir()) == ["97_breaks.json", "98_works.json"]  # no partial left
    works = json.loads((committed / "98_works.json").read_text())
    assert works["metrics"]["ndcg"]["value"] == 0.75 and works["machine"] == "1-core test CPU, no GPU"


def test_a_quick_run_records_only_its_run_time(tmp_path, scratch_build):
    committed = tmp_path / "results"
    committed.mkdir()
    old = {"notebook": "98_works", "runtime_s": 5.0, "machine": "old CPU", "date": "2026-11-22", "metrics": {}}
    (committed / "98_works.json").write_text(json.dumps(old))
    assert run_notebooks([_notebook(tmp_path, "98_works", fail=False)], committed, quick=True) == []
    payload = json.loads((committed / "98_works.json").read_text())
    assert payload == {**old, "runtime_quick_s": payload["runtime_quick_s"]} and payload["runtime_quick_s"] > 0
    assert [p.name for p in committed.iterdir()] == ["98_works.json"]


def test_results_run_exits_non_zero_and_names_the_failed_notebook(tmp_path, monkeypatch, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("".join(f"<!-- results:{b} -->\n<!-- /results:{b} -->\n" for b in ("notebooks", "metrics")))
    monkeypatch.setattr(results, "README", readme)
    monkeypatch.setattr(results, "_stamp_notebooks", lambda directory, write: [])
    monkeypatch.setattr(results, "run_notebooks", lambda paths, quick=False: ["03_x.ipynb: RuntimeError: boom"])
    monkeypatch.setenv("RECSYS_TUTORIAL_RESULTS", str(tmp_path))
    assert results.main(["run"]) == 1
    assert "03_x.ipynb: RuntimeError: boom" in capsys.readouterr().err


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
