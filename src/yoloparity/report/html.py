"""One self-contained HTML page for an audit or a benchmark: tables, charts, a gallery of images that differ.

No network resources: styles are inline, charts are matplotlib's SVG inline (:mod:`.charts`), images are
embedded as base64 JPEG. A tiny script marks the page rendered (``data-rendered``) so a headless browser can
check it ran without errors.
"""

from __future__ import annotations

import html
import json

from ..auditing.audit import AuditResult
from . import charts

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


def audit_html(result: AuditResult) -> str:
    """The audit's page, from its typed result: the report's tables, the IoU and score-delta samples per
    configuration as histograms, the gallery of differing images."""
    report, gallery, samples = result.report.to_dict(), result.gallery, result.samples
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
        plots.append(f"<div><h3>{_esc(label)}</h3>"
                     + charts.histogram("IoU of matched detections", s.get("iou", []), "matched detections", "IoU")
                     + charts.histogram("score delta of matched detections", s.get("score_delta", []),
                                        "matched detections", "config score - reference score") + "</div>")
    truth = report.get("truth")
    truth_html = ""
    if truth:
        rows = [[r["label"], r["role"], "-" if r["raw_max_abs"] is None else f"{r['raw_max_abs']:.3g}", r["images_differing"],
                 r["detections_differing"], r["real"], r["borderline"]] for r in truth["runs"]]
        truth_html = (f"<h2>Distance to the float64 truth ({_esc(truth['label'])})</h2><p class='small'>{_esc(truth['note'])}</p>"
                      + _table(["run", "role", "raw max |d| to fp64", "images differing", "detections differing", "real",
                                "borderline"], rows, left=2)
                      + charts.bars("detections differing from fp64", [r["label"] for r in truth["runs"]],
                                    {"detections differing from fp64": [float(r["detections_differing"]) for r in truth["runs"]]},
                                    xlabel="detections"))
    notes = "".join(f"<p class='small'>note: {_esc(n)}</p>" for n in report.get("notes", []))
    cards = "".join(f'<div class="card"><div><b>{_esc(g.config)}</b> — {_esc(g.file)}</div>'
                    f'<div class="small">{_esc(g.detail)}; left: reference, right: config</div>'
                    f'<img alt="{_esc(g.file)}" src="data:image/jpeg;base64,{g.jpeg_base64}"></div>' for g in gallery)
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
{charts.bars("detections per class", classes, series, xlabel="detections") if classes else ""}
<h2>Matched detections</h2>
<div class="gallery">{''.join(plots)}</div>
<h2>Images that differ</h2>
<div class="gallery">{cards or "<p>None.</p>"}</div>
<script>document.body.setAttribute("data-rendered", "1");</script>
</body></html>
"""


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
            + "<h2>Speed vs accuracy</h2>" + charts.scatter("images/s (median) vs mAP50-95", points, "images/s (median)",
                                                            "mAP50-95")
            + ("<h2>Not run</h2>" + _table(["backend", "precision", "batch", "status", "reason"], not_run, left=5) if not_run else "")
            + "<script>document.body.dataset.rendered='1'</script></body></html>")
