"""``scripts/compare_official.py`` skips cleanly without a checkout and refuses a wrong one (the
race itself needs NetX-lab/GoMathL2O-Official, which CI does not have)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = str(ROOT / "scripts" / "compare_official.py")


def test_without_a_checkout_it_says_why_and_exits_zero():
    result = subprocess.run([sys.executable, SCRIPT, "--products", "blas"], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "compare_official: skipped (no --official PATH" in result.stdout


def test_a_directory_that_is_not_the_official_code_is_refused(tmp_path):
    result = subprocess.run([sys.executable, SCRIPT, "--official", str(tmp_path)], capture_output=True,
                            text=True, cwd=ROOT, timeout=120)
    assert result.returncode != 0
    assert "is not a checkout of NetX-lab/GoMathL2O-Official" in result.stderr


def test_an_unknown_products_library_is_refused():
    result = subprocess.run([sys.executable, SCRIPT, "--products", "mkl"], capture_output=True, text=True,
                            cwd=ROOT, timeout=120)
    assert result.returncode == 2 and "invalid choice: 'mkl'" in result.stderr
