"""Where the checkout is, for tests that run scripts or read files by path.

Test modules sit one or two folders below tests/, so each finding the root by counting
parents would break when it moves; they import REPO from here instead.
"""

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "src" / "crossmodal" / "samples"
