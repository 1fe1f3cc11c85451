"""Files that are never half-written: atomic writes, stale-temporary cleanup, JSON-safe values.

Every write goes to a temporary file in the target's folder, is flushed to disk and then renamed
over the target (``os.replace`` is atomic), so a crash or a full disk never leaves a half-written
file where a good one was. A process killed during a write leaves a ``.<name>.*.tmp`` file, which
:func:`remove_stale_temporaries` deletes when the folder is used again.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Iterator, Union

__all__ = ["PathLike", "atomic_path", "remove_stale_temporaries", "write_text", "write_json", "json_safe", "trim_jsonl"]

PathLike = Union[str, os.PathLike]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def remove_stale_temporaries(folder: PathLike) -> list[Path]:
    """Delete the ``.<name>.*.tmp`` files an interrupted :func:`atomic_path` write left in ``folder``."""
    removed = []
    for tmp in Path(folder).glob(".*.tmp"):
        with contextlib.suppress(OSError):
            tmp.unlink()
            removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync it and rename it onto ``path``.

    On any exception the temporary file is removed and ``path`` is left as it was.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_text(path: PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, newlines as given) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8", newline="")
    return Path(path)


def json_safe(value: Any) -> Any:
    """``value`` with every non-finite float replaced by None (strict JSON has no NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_json(path: PathLike, value: Any) -> Path:
    """Write ``value`` as indented strict JSON (NaN -> null) to ``path`` atomically."""
    return write_text(path, json.dumps(json_safe(value), indent=2, allow_nan=False) + "\n")


def trim_jsonl(path: PathLike, key: str, keep_until: float) -> None:
    """Keep the lines of a JSON-lines log whose ``key`` is <= ``keep_until`` (rewritten atomically).

    Training drops the records written after the checkpoint it resumes from (all of them on a fresh
    run); unreadable lines (a write cut by a kill) are dropped too.
    """
    file = Path(path)
    if not file.exists():
        return
    kept = []
    for line in file.read_text().splitlines():
        try:
            if json.loads(line).get(key, 0) <= keep_until:
                kept.append(line)
        except json.JSONDecodeError:
            continue
    write_text(file, "".join(line + "\n" for line in kept))
