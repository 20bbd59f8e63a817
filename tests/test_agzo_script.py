"""``scripts/agzo.py`` runs every section end to end at tiny sizes and writes what it prints."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_agzo_section_runs(tmp_path):
    command = [sys.executable, str(ROOT / "scripts" / "agzo.py"), "--out", str(tmp_path), "--draws", "2",
               "--q", "1", "--forwards", "40", "--lrs", "1e-3", "--sizes", "100000", "--memory-batch", "8"]
    result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    cosine = json.loads((tmp_path / "cosine.json").read_text())["rows"]
    assert {r["model"] for r in cosine} == {"mlp", "transformer"}
    assert any(r["layer"] == "encoder.self_attn.in_proj_weight" for r in cosine)
    finetune = json.loads((tmp_path / "finetune.json").read_text())["rows"]
    assert any(r["method"].startswith("AGZO") for r in finetune) and any("Adam" in r["method"] for r in finetune)
    memory = json.loads((tmp_path / "memory.json").read_text())["rows"]
    assert memory[0]["AGZO step MB"] >= 0 and "## memory" in result.stdout
