"""Replace (or append) one script's marked section of BENCHMARKS.md, leaving the others alone."""

from __future__ import annotations

import os
import re
from pathlib import Path

HEADER = "# Benchmarks\n\nFigures measured by the scripts in `bench/`; each section names its command.\n"


def update_section(path: Path, begin: str, end: str, section: str) -> None:
    text = path.read_text() if path.exists() else HEADER
    if begin in text:
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), lambda _: section, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    path.write_text(text)


def publish(section: str, root: Path, begin: str, end: str, write: bool = True) -> None:
    """Print a benchmark's section and, unless told not to, put it into ``root``/BENCHMARKS.md."""
    print(section)
    if write:
        update_section(root / "BENCHMARKS.md", begin, end, section)


def assets_dir(root: Path) -> Path:
    """The shared assets the benchmarks read (``YOLOPARITY_ASSETS``, default ``../shared/assets``)."""
    return Path(os.environ.get("YOLOPARITY_ASSETS", root.parent / "shared" / "assets"))
