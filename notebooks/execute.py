"""Run the notebooks top to bottom (``make notebooks``), writing executed copies; the committed ones stay clean.

Usage: ``python notebooks/execute.py [--out demo/notebooks] [NOTEBOOK ...]`` (default: every ``notebooks/*.ipynb``).
The notebooks read their data and checkpoints from the demo folder (``make demo``) unless the ``TVAU_*``
environment variables described in each notebook's first cell say otherwise. Exits non-zero, naming the
notebook and cell, on the first error.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def execute_notebook(path: Path, out_dir: Path, timeout: int = 600) -> Path:
    """Execute ``path`` with the notebooks folder as working directory; save the executed copy in ``out_dir``."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(HERE)}}).execute()
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / path.name
    nbformat.write(notebook, target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks to run (default: all in notebooks/)")
    parser.add_argument("--out", type=Path, default=HERE.parent / "demo" / "notebooks",
                        help="folder for the executed copies (default demo/notebooks)")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(HERE.glob("*.ipynb"))
    for path in paths:
        start = time.perf_counter()
        try:
            target = execute_notebook(path, args.out)
        except Exception as error:  # CellExecutionError names the cell and shows the traceback
            print(f"{path.name}: FAILED\n{error}", file=sys.stderr)
            return 1
        print(f"{path.name}: ran in {time.perf_counter() - start:.1f} s → {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
