"""Execute notebooks/quickstart.ipynb top to bottom, so it cannot rot.

It runs with the real default encoder (rs-lite) when that can be created here. Where it cannot (no
trained weights yet), the toy test encoder is registered in the kernel by one injected first cell:
the notebook's code still runs end to end, only the search results mean less.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"
TESTS = Path(__file__).resolve().parent


def _encoder_for_notebook() -> str:
    name = os.environ.get("RSRAG_QUICKSTART_ENCODER")
    if name:
        return name
    try:
        from rsrag.encoders import create_encoder

        create_encoder("rs-lite")
        return "rs-lite"
    except Exception:  # noqa: BLE001 - no weights yet: fall back to the test encoder
        return "test-hash"


def test_quickstart_notebook_runs(tmp_path, monkeypatch, data_root):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    encoder = _encoder_for_notebook()
    if encoder == "test-hash":
        nb.cells.insert(0, nbformat.v4.new_code_cell(
            f"import sys\nsys.path.insert(0, {str(TESTS)!r})\nimport index_helpers  # registers test-hash"))
    monkeypatch.setenv("RSRAG_QUICKSTART_ENCODER", encoder)
    monkeypatch.setenv("RSRAG_QUICKSTART_N", "72")
    monkeypatch.setenv("RSRAG_DATA", str(data_root))
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the notebook's index folder (tempfile.mkdtemp) lands here
    paths = [str(NOTEBOOK.parent.parent), os.environ.get("PYTHONPATH")]
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the cell and traceback, on any failure
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) >= 3, "expected the result grids as images"
    text = "".join(o.get("text", "") for o in outputs)
    assert "deleted ucm/" in text and "records left" in text
