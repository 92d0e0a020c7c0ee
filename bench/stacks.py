"""Where a py-spy profile's time went: collapsed stacks (``py-spy record
--format raw``) summed by function, inclusive and self, and by package.

Usage: ``.venv/bin/python -m bench.stacks FILE [--top 25]``.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

#: ``function (path/to/module.py:line)`` as py-spy writes a frame.
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<path>[^:()]+)(?::\d+)?\)$")


def _package(path: str) -> str:
    """py-spy names frames by a path relative to their sys.path entry: its
    first part is the package (a bare file is the standard library's)."""
    head, sep, _ = path.partition("/")
    return head if sep and not head.startswith("<") else "(stdlib)"


#: Leaves where a thread waits rather than works.
IDLE = ("selectors.EpollSelector.select", "thread._worker", "threading.Condition.wait")


def _name(frame: str) -> tuple[str, str]:
    found = _FRAME.match(frame.strip())
    if found is None:
        return frame.strip(), "?"
    path = found["path"]
    module = path.rsplit("/", 1)[-1].removesuffix(".py")
    return f"{_package(path)}:{module}.{found['func']}", _package(path)


def summarise(path: Path, top: int) -> str:
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = [_name(f) for f in stack.split(";") if f.strip()]
        if frames and frames[-1][0].endswith(IDLE):
            continue
        for name in {name for name, _ in frames}:
            inclusive[name] += count
        if frames:
            leaf, package = frames[-1]
            own[leaf] += count
            packages[package] += count
    if not total:
        return f"{path}: no samples"

    def share(n: int) -> str:
        return f"{100 * n / total:5.1f}%"

    lines = [f"{path.name}: {total} samples"]
    lines += ["", "self time by package:"]
    lines += [f"  {share(n)}  {name}" for name, n in packages.most_common(top)]
    lines += ["", "self time by function:"]
    lines += [f"  {share(n)}  {name}" for name, n in own.most_common(top)]
    lines += ["", "inclusive time by function (raykube and kopf):"]
    ours = [(k, n) for k, n in inclusive.most_common() if k.startswith(("raykube:", "kopf:"))]
    lines += [f"  {share(n)}  {name}" for name, n in ours[:top]]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", type=Path, nargs="+")
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    for file in args.files:
        print(summarise(file, args.top))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
