"""tools/session_holdout.py: trains one variant without the held-out session and scores it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from _tools import load_tool


def _tiles(root: Path) -> None:
    rng = np.random.default_rng(0)
    folder = root / "tile" / "train" / "good"
    folder.mkdir(parents=True)
    for session, level in (("exp1", 70), ("exp2", 110), ("exp3", 160)):
        for i in range(10):
            grey = np.clip(level + rng.normal(0, 12, (40, 40)), 0, 255).astype(np.uint8)
            Image.fromarray(grey).save(folder / f"{session}_num_{i}.png")


def test_one_variant_writes_its_figures_and_the_report_reads_them(tmp_path: Path, capsys) -> None:
    _tiles(tmp_path / "data")
    tool = load_tool("session_holdout")
    out = tmp_path / "out"
    common = ["--data", str(tmp_path / "data"), "--category", "tile", "--image-size", "32", "--steps", "1",
              "--out", str(out)]
    assert tool.main(common + ["--holdout", "exp3", "--variant", "jitter:exposure_jitter=1.0"]) == 0
    record = json.loads((out / "jitter.json").read_text())
    assert record["overrides"] == {"exposure_jitter": 1.0} and record["steps"] == 1
    assert 0.0 <= record["exposure_auroc"] <= 1.0 and 0.0 <= record["false_alarms"] <= 1.0
    assert set(record["synthetic_holdout"]) == {"image_auroc", "pixel_auroc"}
    assert -1.0 <= record["grey_spearman"] <= 1.0
    capsys.readouterr()
    assert tool.main(["--report", str(out)]) == 0
    table = capsys.readouterr().out
    assert "| jitter | {'exposure_jitter': 1.0} | 1 |" in table and f"| {record['grey_spearman']:+.2f} |" in table

    assert tool.main(common + ["--holdout", "exp9"]) == 2
    assert "groups found: ['exp1', 'exp2', 'exp3']" in capsys.readouterr().err
    assert tool.main(common + ["--holdout", "exp3", "--variant", "bad:exposure_jitter"]) == 2
    assert "is not key=value" in capsys.readouterr().err
    assert tool.main(common + ["--holdout", "exp3", "--variant", "bad:no_such_setting=1"]) == 2
    assert "no_such_setting" in capsys.readouterr().err
