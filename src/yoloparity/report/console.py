"""Readable tables for people; the CLI prints what these return."""

from __future__ import annotations

from typing import Sequence


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]], title: str | None = None) -> str:
    """A plain fixed-width table; numbers right-aligned, text left-aligned."""
    cells = [[str(h) for h in headers]] + [[_fmt(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    numeric = [all(_is_number(row[i]) for row in rows) if rows else False for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [title] if title else []
    out.append(line(cells[0]))
    out.append("  ".join("-" * w for w in widths))
    out.extend(line(r) for r in cells[1:])
    return "\n".join(out)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def format_stage_times(stats: dict) -> str:
    """Per-stage timings (ms per image) of a predict run, with throughput."""
    ms = stats["ms_per_image"]
    rows = [[stage, ms[stage]] for stage in ("decode", "letterbox", "inference", "nms")]
    table = format_table(["stage", "ms/image"], rows, title="Per-stage time (decode and letterbox run in worker threads, overlapping inference)")
    rate = stats.get("images_per_s")
    tail = f"{stats['images']} images in {stats['wall_s']:.2f} s" + (f" ({rate:.1f} images/s end to end)" if rate else "")
    if stats.get("skipped"):
        tail += f"; {stats['skipped']} skipped"
    return table + "\n" + tail


def format_class_counts(counts: dict[str, int]) -> str:
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return format_table(["class", "detections"], rows)
