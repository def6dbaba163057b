"""Charts for the HTML pages, drawn by matplotlib as inline SVG (the page stays one self-contained file).

Hand-drawn SVG got the details wrong that a plotting library gets right: an IoU histogram whose values all lie above
0.999 read "1 … 1" on its axis, long legends were cut, and a chart of zero-height bars showed nothing at all. Here
every chart has labelled axes with ticks that resolve its data, a legend that fits (the figure grows with it), and
where there is nothing to draw a sentence saying so instead of an empty frame.

matplotlib is used through its object API (``Figure`` with the Agg canvas, no ``pyplot``), inside
``rc_context``, so drawing a page changes no global state of the caller's matplotlib. Text stays text in the SVG
(``svg.fonttype: none``) so it is searchable and crisp, and each chart's ids are salted apart so several charts in
one page do not share clip-path ids. Each legend group has the id ``legend-N``.
"""

from __future__ import annotations

import html
import io
import itertools

import numpy as np

COLORS = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#9c755f"]
_counter = itertools.count(1)


def empty_chart(title: str, message: str) -> str:
    """The empty state: the chart's title and why there is nothing to draw."""
    return f'<p class="small chart-empty"><b>{html.escape(title)}</b>: {html.escape(message)}</p>'


def _svg(figure, title: str) -> str:
    """The figure as an inline ``<svg>`` element (the XML prolog and doctype dropped)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(figure)
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight")
    text = buffer.getvalue()
    svg = text[text.index("<svg"):]
    return svg.replace("<svg ", f'<svg role="img" aria-label="{html.escape(title)}" ', 1)


def _figure(width_in: float, height_in: float):
    """A figure drawn by the Agg canvas directly: no pyplot, no backend switch, nothing global."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width_in, height_in), dpi=100)


def _context(salt: str):
    import matplotlib

    return matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt, "font.size": 9,
                                  "axes.spines.top": False, "axes.spines.right": False})


def _legend(ax, n: int, **kwargs) -> None:
    legend = ax.legend(frameon=False, fontsize=8, **kwargs)
    legend.set_gid(f"legend-{n}")


def bars(title: str, labels: list[str], series: dict[str, list[float]], xlabel: str = "count") -> str:
    """Grouped horizontal bars: one group per label, one bar per series; the legend names the series."""
    if not labels or not series:
        return empty_chart(title, "nothing to compare")
    if not any(v for values in series.values() for v in values):
        return empty_chart(title, f"every value is 0 ({len(labels)} x {len(series)})")
    n = next(_counter)
    with _context(f"{title}-{n}"):
        fig = _figure(7.6, 0.9 + 0.22 * len(labels) * max(len(series), 1) + 0.2 * len(series))
        ax = fig.add_subplot()
        height = 0.8 / len(series)
        y = np.arange(len(labels))
        for k, (name, values) in enumerate(series.items()):
            rects = ax.barh(y - 0.4 + height * (k + 0.5), values, height, label=name, color=COLORS[k % len(COLORS)])
            ax.bar_label(rects, fmt="%g", fontsize=7, padding=2)
        ax.set_yticks(y, labels)
        ax.invert_yaxis()
        ax.set_xlabel(xlabel)
        ax.set_title(title, loc="left", fontsize=10)
        _legend(ax, n, loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.3 / max(len(labels), 1)),
                ncol=1 if len(series) > 3 else len(series))
        return _svg(fig, title)


def histogram(title: str, values: list[float], what: str, xlabel: str, bins: int = 30) -> str:
    """A histogram of ``values`` with an axis that resolves them (no offset notation: 0.9995 reads 0.9995)."""
    if not values:
        return empty_chart(title, f"no {what}")
    data = np.asarray(values, np.float64)
    n = next(_counter)
    with _context(f"{title}-{n}"):
        from matplotlib.ticker import FormatStrFormatter, MaxNLocator, ScalarFormatter

        fig = _figure(3.8, 2.5)
        ax = fig.add_subplot()
        lo, hi = float(data.min()), float(data.max())
        if lo == hi:  # one value: a narrow bin around it, not a degenerate range
            pad = max(abs(lo) * 1e-6, 1e-9)
            lo, hi = lo - pad, hi + pad
        ax.hist(data, bins=bins, range=(lo, hi), color=COLORS[0], label=f"{len(data)} {what}")
        if max(abs(lo), abs(hi)) < 1e-3:  # tiny values (score deltas at float noise): short scientific ticks
            ax.xaxis.set_major_formatter(FormatStrFormatter("%.1e"))
            ax.xaxis.set_major_locator(MaxNLocator(3))
        else:  # no offset notation: 0.9995 reads 0.9995, not "+9.99e-1" or "1 ... 1"
            formatter = ScalarFormatter(useOffset=False)
            formatter.set_scientific(False)
            ax.xaxis.set_major_formatter(formatter)
            ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(f"{xlabel} (min {float(data.min()):.6g}, max {float(data.max()):.6g})")
        ax.set_ylabel("count")
        ax.set_title(title, loc="left", fontsize=10)
        _legend(ax, n, loc="upper center", bbox_to_anchor=(0.5, -0.3))
        return _svg(fig, title)


def scatter(title: str, points: list[tuple[str, float, float]], xlabel: str, ylabel: str) -> str:
    """Labelled points (label, x, y); the legend names each point's marker."""
    if not points:
        return empty_chart(title, "no configuration has both values")
    n = next(_counter)
    with _context(f"{title}-{n}"):
        fig = _figure(7.6, 4.0)
        ax = fig.add_subplot()
        markers = "osD^vP*X"
        for k, (label, x, y) in enumerate(points):
            ax.scatter([x], [y], color=COLORS[k % len(COLORS)], marker=markers[k // len(COLORS) % len(markers)],
                       label=label)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title, loc="left", fontsize=10)
        ax.margins(0.1)
        _legend(ax, n, loc="upper left", bbox_to_anchor=(1.02, 1.0))
        return _svg(fig, title)
