"""Where the tools find the repository and the shared data sets (evaluation data, never shipped)."""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# ../shared/data beside the checkout; FACEID_SHARED_DATA points elsewhere.
SHARED_DATA = Path(os.environ.get("FACEID_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
BENCHMARKS = REPO_ROOT / "docs" / "benchmarks"
