"""tools/tune_demo.py: its --set parser and its refusal to validate on the demo's own test seed."""

from __future__ import annotations

import sys

import pytest

from _tools import load_tool

tune = load_tool("tune_demo")


def test_settings_parse_as_json_or_text():
    assert tune.parse_setting("lr_seg=3e-3") == ("lr_seg", 0.003)
    assert tune.parse_setting("batch_size=8") == ("batch_size", 8)
    assert tune.parse_setting("anomaly_source=/data/dtd") == ("anomaly_source", "/data/dtd")


@pytest.mark.parametrize("text", ["lr_sge=3e-3", "lr_seg", "=1"])
def test_unknown_or_malformed_settings_are_refused(text):
    with pytest.raises(SystemExit, match="expected name=value"):
        tune.parse_setting(text)


def test_seed_zero_is_refused_before_any_work(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["tune_demo.py", "--out", str(tmp_path / "run"), "--val-seeds", "0", "1"])
    with pytest.raises(SystemExit, match="seed 0's test set is the demo's own"):
        tune.main()
    assert not (tmp_path / "run").exists()
