"""One self-contained HTML page for an audit: tables, inline SVG plots, a gallery of images that differ.

No network resources: styles are inline, plots are SVG drawn here, images are embedded as
base64 JPEG. A tiny script marks the page rendered (``data-rendered``) so a headless browser can
check it ran without errors.
"""

from __future__ import annotations

import html
import json

import numpy as np

_STYLE = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px}table{border-collapse:collapse;margin:8px 0}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}td.l,th.l{text-align:left}
.pass{color:#176b2c;font-weight:bold}.fail{color:#b3261e;font-weight:bold}
.gallery{display:flex;flex-wrap:wrap;gap:12px}.card{border:1px solid #ddd;padding:6px;max-width:560px}
.card img{max-width:100%}.small{color:#666;font-size:12px}
"""


def _esc(value) -> str:
    return html.escape(str(value))


def _table(headers: list[str], rows: list[list], left: int = 1) -> str:
    head = "".join(f'<th class="{"l" if i < left else ""}">{_esc(h)}</th>' for i, h in enumerate(headers))
    body = "".join("<tr>" + "".join(f'<td class="{"l" if i < left else ""}">{_esc(v)}</td>' for i, v in enumerate(r)) + "</tr>"
                   for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _bars(title: str, labels: list[str], series: dict[str, list[float]], width: int = 760) -> str:
    """Grouped horizontal bar chart as SVG."""
    if not labels:
        return ""
    colors = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1"]
    row_h = 10 * len(series) + 8
    height = row_h * len(labels) + 34 + 14 * len(series)
    vmax = max(max(v) for v in series.values()) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{_esc(title)}">',
             f'<text x="0" y="14" font-size="13">{_esc(title)}</text>']
    for i, label in enumerate(labels):
        y = 26 + i * row_h
        parts.append(f'<text x="0" y="{y + row_h / 2 + 3:.0f}" font-size="11">{_esc(label)}</text>')
        for k, (name, values) in enumerate(series.items()):
            w = (width - 260) * values[i] / vmax
            parts.append(f'<rect x="150" y="{y + k * 10}" width="{w:.1f}" height="9" fill="{colors[k % len(colors)]}">'
                         f'<title>{_esc(name)}: {values[i]}</title></rect>')
            parts.append(f'<text x="{154 + w:.1f}" y="{y + k * 10 + 8}" font-size="9">{values[i]:g}</text>')
    top = 26 + row_h * len(labels) + 4
    parts.append('<g class="legend">')  # one line per series, so any number of configurations fits
    for k, name in enumerate(series):
        parts.append(f'<rect x="150" y="{top + k * 14}" width="9" height="9" fill="{colors[k % len(colors)]}"/>'
                     f'<text x="163" y="{top + k * 14 + 9}" font-size="11">{_esc(name)}</text>')
    parts.append("</g></svg>")
    return "".join(parts)


def _histogram(title: str, values: list[float], legend: str, bins: int = 30, width: int = 360, height: int = 176) -> str:
    if not values:
        return f"<p class='small'>{_esc(title)}: no matched detections</p>"
    counts, edges = np.histogram(np.asarray(values, np.float64), bins=bins)
    top = counts.max() or 1
    bw = (width - 20) / bins
    bars = "".join(f'<rect x="{10 + i * bw:.1f}" y="{height - 30 - (height - 50) * c / top:.1f}" width="{bw - 1:.1f}" '
                   f'height="{(height - 50) * c / top:.1f}" fill="#4e79a7"><title>{edges[i]:.3g}..{edges[i + 1]:.3g}: {c}</title></rect>'
                   for i, c in enumerate(counts))
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{_esc(title)}">'
            f'<text x="0" y="14" font-size="12">{_esc(title)}</text>{bars}'
            f'<text x="10" y="{height - 12}" font-size="10">{edges[0]:.3g}</text>'
            f'<text x="{width - 60}" y="{height - 12}" font-size="10">{edges[-1]:.3g}</text>'
            f'<g class="legend"><rect x="10" y="{height - 9}" width="9" height="9" fill="#4e79a7"/>'
            f'<text x="23" y="{height - 1}" font-size="10">{_esc(legend)}: {len(values)} matched detections per bin range</text>'
            f'</g></svg>')


def audit_html(report: dict, gallery: list[dict], samples: dict[str, dict[str, list[float]]]) -> str:
    """``gallery``: [{config, file, detail, jpeg_base64}]; ``samples``: per config label, 'iou' and 'score_delta' values."""
    verdict = report["verdict"]
    ref = report["reference"]["label"]
    summary = [[c["label"], f"{c['images_differing']}/{c['images_compared']}", c["real"], c["borderline"],
                "-" if c["raw"]["max_abs"] is None else f"{c['raw']['max_abs']:.3g}",
                {True: "yes", False: "NO", None: "-"}[c["run_to_run_identical"]],
                ", ".join(f"{k}: {v}" for k, v in c["first_divergence"].items()) or "-"] for c in report["configs"]]
    classes = sorted({n for c in report["configs"] for n, v in c["per_class"].items() if v["reference"] != v["config"]})
    series = {ref + " (reference)": [float(report["configs"][0]["per_class"].get(n, {}).get("reference", 0)) for n in classes]}
    for c in report["configs"]:
        series[c["label"]] = [float(c["per_class"].get(n, {}).get("config", 0)) for n in classes]
    plots = []
    for label, s in samples.items():
        plots.append(f"<div><h3>{_esc(label)}</h3>{_histogram('IoU of matched detections', s.get('iou', []), label)}"
                     f"{_histogram('score delta of matched detections', s.get('score_delta', []), label)}</div>")
    truth = report.get("truth")
    truth_html = ""
    if truth:
        rows = [[r["label"], r["role"], "-" if r["raw_max_abs"] is None else f"{r['raw_max_abs']:.3g}", r["images_differing"],
                 r["detections_differing"], r["real"], r["borderline"]] for r in truth["runs"]]
        truth_html = (f"<h2>Distance to the float64 truth ({_esc(truth['label'])})</h2><p class='small'>{_esc(truth['note'])}</p>"
                      + _table(["run", "role", "raw max |d| to fp64", "images differing", "detections differing", "real",
                                "borderline"], rows, left=2)
                      + _bars("detections differing from fp64", [r["label"] for r in truth["runs"]],
                              {"detections differing from fp64": [float(r["detections_differing"]) for r in truth["runs"]]}))
    notes = "".join(f"<p class='small'>note: {_esc(n)}</p>" for n in report.get("notes", []))
    cards = "".join(f'<div class="card"><div><b>{_esc(g["config"])}</b> — {_esc(g["file"])}</div>'
                    f'<div class="small">{_esc(g["detail"])}; left: reference, right: config</div>'
                    f'<img alt="{_esc(g["file"])}" src="data:image/jpeg;base64,{g["jpeg_base64"]}"></div>' for g in gallery)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>yoloparity audit: {_esc(verdict)}</title><style>{_STYLE}</style></head>
<body>
<h1>yoloparity audit — <span class="{_esc(verdict)}">{_esc(verdict.upper())}</span></h1>
<p>{report['images']} images, reference <b>{_esc(ref)}</b>; thresholds conf {report['thresholds']['conf']}, IoU {report['thresholds']['iou']};
tolerances {_esc(json.dumps(report['tolerances']))}.</p>
<h2>Configurations</h2>
{_table(["config", "images differing", "real", "borderline", "raw max |d|", "run-to-run identical", "first divergence"], summary)}
{notes}{truth_html}
<h2>Detections per class where a configuration differs</h2>
{_table(["class", "reference"] + [c["label"] for c in report["configs"]],
        [[n] + [int(v[i]) for v in series.values()] for i, n in enumerate(classes)]) if classes else "<p>No class count differs.</p>"}
{_bars("detections per class", classes, series)}
<h2>Matched detections</h2>
<div class="gallery">{''.join(plots)}</div>
<h2>Images that differ</h2>
<div class="gallery">{cards or "<p>None.</p>"}</div>
<script>document.body.setAttribute("data-rendered", "1");</script>
</body></html>
"""


def _scatter(title: str, points: list[tuple[str, float, float]], xlabel: str, ylabel: str,
             width: int = 760, height: int = 380) -> str:
    """Labelled scatter plot as SVG: (label, x, y)."""
    if not points:
        return f"<p class='small'>{_esc(title)}: no configuration has both values</p>"
    xs, ys = [p[1] for p in points], [p[2] for p in points]
    x0, x1 = 0.0, max(xs) * 1.1 or 1
    y0, y1 = min(ys) - 0.02, max(ys) + 0.02
    left, bottom, right, top = 60, height - 40, width - 20, 30

    def px(x):
        return left + (right - left) * (x - x0) / (x1 - x0)

    def py(y):
        return bottom - (bottom - top) * (y - y0) / ((y1 - y0) or 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" aria-label="{_esc(title)}">',
             f'<text x="0" y="14" font-size="13">{_esc(title)}</text>',
             f'<line x1="{left}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#999"/>',
             f'<line x1="{left}" y1="{bottom}" x2="{left}" y2="{top}" stroke="#999"/>',
             f'<text x="{(left + right) / 2:.0f}" y="{height - 8}" font-size="11">{_esc(xlabel)}</text>',
             f'<text x="4" y="{top - 8}" font-size="11">{_esc(ylabel)}</text>',
             f'<text x="{left - 4}" y="{bottom}" font-size="10" text-anchor="end">{y0:.3f}</text>',
             f'<text x="{left - 4}" y="{top + 8}" font-size="10" text-anchor="end">{y1:.3f}</text>',
             f'<text x="{right}" y="{bottom + 14}" font-size="10" text-anchor="end">{x1:.1f}</text>']
    for label, x, y in points:
        parts.append(f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="5" fill="#4e79a7"><title>{_esc(label)}: {x:.1f}, {y:.4f}</title></circle>'
                     f'<text x="{px(x) + 7:.1f}" y="{py(y) + 4:.1f}" font-size="10">{_esc(label)}</text>')
    parts.append(f'<g class="legend"><circle cx="{right - 250}" cy="10" r="5" fill="#4e79a7"/>'
                 f'<text x="{right - 240}" y="14" font-size="11">one configuration (backend precision batch)</text></g></svg>')
    return "".join(parts)


def bench_html(report: dict, rows: list[list], headers: list[str]) -> str:
    """The benchmark table and a speed-vs-accuracy plot, as one self-contained page."""
    points = [(f"{r['backend']} {r['precision']} b{r['batch']}", r["images_per_s"]["median"], r["map50_95"])
              for r in report["results"] if r["status"] == "ok" and r.get("map50_95") is not None]
    not_run = [[r["backend"], r["precision"], r["batch"], r["status"], r["reason"]] for r in report["results"] if r["status"] != "ok"]
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>yoloparity bench</title><style>{_STYLE}</style></head>"
            f"<body><h1>Benchmark: {_esc(report['model'])}</h1>"
            f"<p class='small'>{_esc(report['machine'])}; model {report['gflops'] or 'n/a'} GFLOPs at "
            f"{report['options']['imgsz']}; {report['options']['repeats']} repeats after {report['options']['warmup']} warm-up</p>"
            + _table(headers, rows, left=3)
            + "<h2>Speed vs accuracy</h2>" + _scatter("images/s (median) vs mAP50-95", points, "images/s", "mAP50-95")
            + ("<h2>Not run</h2>" + _table(["backend", "precision", "batch", "status", "reason"], not_run, left=5) if not_run else "")
            + "<script>document.body.dataset.rendered='1'</script></body></html>")
