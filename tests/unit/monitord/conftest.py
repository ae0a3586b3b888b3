"""Makes the shared fakes of these tests importable as ``tests.unit.monitord.*``.

Under ``--import-mode=importlib`` a helper module next to the tests is not importable by name; the
fakes are shared by several test modules, so the repository root is put on the import path (mypy
resolves the same names from there).
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parents[3])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
