"""tools/acquisition_groups.py: per-group counts, grey levels and within-group AUROC."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from _tools import load_tool


def _write(path: Path, grey: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8), grey, dtype=np.uint8)).save(path)


def test_a_session_only_in_the_test_normals_shows_up(tmp_path: Path, capsys) -> None:
    cat = tmp_path / "tile"
    for i in range(3):
        _write(cat / "train" / "good" / f"exp1_num_{i}.png", 60)
    _write(cat / "test" / "good" / "exp1_num_9.png", 60)
    for i in range(2):
        _write(cat / "test" / "good" / f"exp2_num_{i}.png", 200)
        _write(cat / "test" / "crack" / f"exp2_num_{5 + i}.png", 190)
    _write(cat / "test" / "crack" / "exp1_num_7.png", 70)
    scores = tmp_path / "scores.csv"
    rows = [("good/exp1_num_9.png", 0, 0.1), ("good/exp2_num_0.png", 0, 0.9), ("good/exp2_num_1.png", 0, 0.2),
            ("crack/exp2_num_5.png", 1, 0.5), ("crack/exp2_num_6.png", 1, 0.6), ("crack/exp1_num_7.png", 1, 0.3)]
    with open(scores, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path", "defect", "label", "score"])
        for name, label, score in rows:
            writer.writerow([str(cat / "test" / name), name.split("/")[0], label, score])

    tool = load_tool("acquisition_groups")
    assert tool.main(["--data", str(tmp_path), "--category", "tile", "--scores", str(scores)]) == 0
    out = capsys.readouterr().out
    assert "| exp1 | 3 (60) | 1 (60) | 1 (70) |" in out
    assert "| exp2 | 0 | 2 (200) | 2 (190) |" in out
    # exp2: defects 0.5, 0.6 against normals 0.9, 0.2 -> 2 of 4 pairs; exp1: 0.3 > 0.1 -> 100
    assert "| exp2 | 2 | 2 | 50.0 |" in out and "| exp1 | 1 | 1 | 100.0 |" in out
    # grey level: normals 60, 200, 200 against defects 190, 190, 70 -> 3 of 9 pairs rank the defect higher
    assert "image AUROC 33.3 (its negative: 66.7)" in out

    assert tool.main(["--data", str(tmp_path), "--category", "nope"]) == 2
    assert "is not a folder" in capsys.readouterr().err
    assert tool.main(["--data", str(tmp_path), "--category", "tile", "--group", "exp"]) == 2
    assert "no capturing group" in capsys.readouterr().err
