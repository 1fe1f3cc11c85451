"""Render the README "Reliability" table from the reliability suites' own counts.

The fuzz and fault tests (tests/test_fuzz_*.py, tests/test_faults.py, tests/test_determinism.py)
count every input they try and every fault they inject into ``tests/reliability_counts.json``
when run with ``DIFFAD_RELIABILITY_COUNTS`` set (``make reliability`` does both steps). This
script turns that file into the Markdown that sits between the README markers
``<!-- reliability:start -->`` and ``<!-- reliability:end -->``; nothing in the table is typed by
hand, and tests/test_faults.py checks that the README equals what this script renders.

Usage::

    python tools/reliability_table.py            # print the section
    python tools/reliability_table.py --write    # replace it in README.md
    python tools/reliability_table.py --check    # exit 1 if README.md is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
COUNTS = ROOT / "tests" / "reliability_counts.json"
README = ROOT / "README.md"
START, END = "<!-- reliability:start -->", "<!-- reliability:end -->"

NOTES = """\
Counts come from the test suite itself (`make reliability` reruns the suites with
`DIFFAD_RELIABILITY_COUNTS` set and rewrites this table); fuzzing uses hypothesis with fixed
seeds (`derandomize=True`), so every run tries the same inputs. An input either gave the right
answer (checked against an independent reference: the pixels the test wrote, scikit-learn, a
brute-force threshold loop, an uninterrupted training run) or one clear error naming the file or
value; any other outcome fails the suite and is never counted.

Determinism: on CPU the same seed and settings give bit-identical weights, resumed runs and
`metrics.json` numbers (tested). On a GPU, training and evaluation draw the same random numbers
(every draw comes from seeded CPU generators or a seeded device generator), but cuDNN/cuBLAS
choose kernels whose reductions (convolution backward, atomics in attention and in
`index_add`-style ops, bf16 autocast) are not bit-reproducible: metrics can differ slightly (not measured here),
not bit for bit, and a resumed GPU run is equivalent in distribution, not identical. For
bit-exact GPU runs use `--amp off` and set `torch.use_deterministic_algorithms(True)` with
`CUBLAS_WORKSPACE_CONFIG=:4096:8` (slower; not the default, not tested here)."""


_MAX_KINDS = 8  # a cell lists the most frequent kinds, then how many more there are


def _cell(counter: dict[str, int]) -> str:
    items = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
    text = "; ".join(f"{kind} ({n})" for kind, n in items[:_MAX_KINDS])
    rest = items[_MAX_KINDS:]
    if rest:
        text += f"; {len(rest)} more kinds ({sum(n for _, n in rest)})"
    return text


def render(counts: dict) -> str:
    """The Markdown section (without the markers) for a parsed counts file."""
    rows = sorted(counts["rows"].items(), key=lambda kv: kv[1]["order"])
    lines = [
        "| area | inputs tried / faults injected | kinds | outcome |",
        "|---|---:|---|---|",
    ]
    total = 0
    for area, row in rows:
        n = sum(row["inputs"].values())
        total += n
        lines.append(f"| {area} | {n} | {_cell(row['inputs'])} | {_cell(row['outcomes'])} |")
    lines.append(f"| **all** | **{total}** | | no crash, hang, traceback or wrong number |")
    return "\n".join(lines) + "\n\n" + NOTES + "\n"


def readme_section(readme: Path = README) -> str:
    """The text currently between the README markers."""
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme} has no {START} ... {END} markers")
    return text.split(START, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def write(readme: Path, section: str) -> None:
    text = readme.read_text()
    head, rest = text.split(START, 1)
    tail = rest.split(END, 1)[1]
    readme.write_text(f"{head}{START}\n{section}{END}{tail}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=Path, default=COUNTS)
    parser.add_argument("--readme", type=Path, default=README)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="replace the section in the README")
    mode.add_argument("--check", action="store_true", help="exit 1 when the README section is stale")
    args = parser.parse_args(argv)
    section = render(json.loads(args.counts.read_text()))
    if args.write:
        write(args.readme, section)
    elif args.check:
        if readme_section(args.readme) != section:
            print(f"{args.readme}: reliability table is stale; run `make reliability`", file=sys.stderr)
            return 1
    else:
        print(section, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
