"""Execute notebooks/quickstart.ipynb top to bottom, so it cannot rot.

It runs with the real default encoder (rs-lite). Only where its weights file is absent (a fresh
retraining) is the toy test encoder registered in the kernel by one injected first cell.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "quickstart.ipynb"
TESTS = Path(__file__).resolve().parent


def _encoder_for_notebook() -> str:
    """rs-lite, the default, whenever its committed weights are present (they are in a checkout)."""
    from rsrag.encoders.rs_lite import DEFAULT_WEIGHTS, weights_path

    name = os.environ.get("RSRAG_QUICKSTART_ENCODER")
    if name:
        return name
    return "rs-lite" if weights_path(DEFAULT_WEIGHTS).exists() else "test-hash"


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
