"""Project files agree with each other: pyproject.toml vs environment.yml, Makefile vs .ci/run."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# conda package names that differ from their PyPI names
CONDA_NAMES = {"torch": "pytorch"}


def _name_spec(req: str) -> tuple[str, str]:
    m = re.match(r"^\s*([A-Za-z0-9_.\-]+)\s*(.*)$", req)
    assert m, req
    return m.group(1).lower(), m.group(2).replace(" ", "")


def _environment_requirements() -> dict[str, str]:
    reqs: dict[str, str] = {}
    text = (ROOT / "environment.yml").read_text()
    for line in text[text.index("dependencies:"):].splitlines():
        m = re.match(r"^\s*-\s+([A-Za-z0-9_.\-]+[^#]*)$", line)
        if not m or m.group(1).strip().endswith(":"):
            continue
        name, spec = _name_spec(m.group(1).strip())
        reqs[name] = spec
    return reqs


def test_environment_yml_lists_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["dev"]
    env = _environment_requirements()
    for req in wanted:
        name, spec = _name_spec(req)
        conda = CONDA_NAMES.get(name, name)
        assert conda in env, f"{name} is in pyproject.toml but not in environment.yml"
        assert env[conda] == spec, f"{name}: pyproject says {spec!r}, environment.yml says {env[conda]!r}"
    extra = set(env) - {CONDA_NAMES.get(_name_spec(r)[0], _name_spec(r)[0]) for r in wanted} - {"python", "pip"}
    assert not extra, f"environment.yml lists packages pyproject.toml does not: {sorted(extra)}"


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", ci, re.M)
    assert "make test" in (ROOT / "README.md").read_text()
    assert re.search(r"^test:", (ROOT / "Makefile").read_text(), re.M)
