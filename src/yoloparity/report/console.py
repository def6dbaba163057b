"""Readable tables for people; the CLI prints what these return."""

from __future__ import annotations

from typing import Sequence

from ..backends.compute_precision import ComputePrecision


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
    if stats.get("processes", 1) > 1:
        tail += f" over {stats['processes']} {stats.get('workers_are', 'processes')}"
    if stats.get("skipped"):
        tail += f"; {stats['skipped']} skipped"
    if stats.get("failed"):
        tail += f"; {stats['failed']} failed"
    if stats.get("merge_s") and (stats.get("jsonl") or stats.get("json")):
        tail += f"; outputs merged in {stats['merge_s']:.2f} s"
    if stats.get("computes"):
        tail += f"\ncomputed in: {ComputePrecision(**stats['computes']).describe()}"
    return table + "\n" + tail


def format_class_counts(counts: dict[str, int]) -> str:
    """Detections per class as a table, most first."""
    rows = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return format_table(["class", "detections"], rows)


def format_reference(reference: dict, what: str = "figure") -> list[str]:
    """The head that ran and the reference command giving the same ``what`` (models.reference_commands.reference_note)."""
    if not reference:
        return []
    lines = [f"head: {reference['head_summary']}"]
    if reference.get("command"):
        lines.append(f"the same {what} from the reference: {reference['command']}")
    return lines


_METRIC_TITLES = {"ultralytics": "Ultralytics' metric (what `yolo val` prints)",
                  "yolov5": "YOLOv5's metric (what val.py prints)", "coco": "the COCO protocol"}


def _coco_table(m) -> str:
    headline = [["mAP50-95", m.mAP50_95], ["mAP50", m.mAP50], ["mAP75", m.mAP75], ["mAP small", m.mAP_small],
                ["mAP medium", m.mAP_medium], ["mAP large", m.mAP_large], ["AR100", m.AR100],
                [f"precision @ conf {m.best_conf:.3f} (best F1)", m.precision], ["recall @ same conf", m.recall]]
    return format_table(["metric", "value"], [[k, f"{v:.4f}"] for k, v in headline],
                        title=f"mAP by the COCO protocol ({m.evaluator}, {m.images} images, {m.detections} detections)")


def _trainer_table(t) -> str:
    rows = [["mAP50-95", t.mAP50_95], ["mAP50", t.mAP50], ["precision (best smoothed F1)", t.precision],
            ["recall (same confidence)", t.recall]]
    return format_table(["metric", "value"], [[k, f"{v:.4f}"] for k, v in rows],
                        title=f"mAP by {_METRIC_TITLES[t.metric]}, {t.images} images, {t.instances} instances")


def _other_metrics_line(report) -> str:
    parts = []
    for name in ("coco", "ultralytics", "yolov5"):
        if name == report.metric:
            continue
        source = report.metrics if name == "coco" else report.trainer.get(name)
        if source is not None:
            parts.append(f"{_METRIC_TITLES[name].split(' (')[0]} {source.mAP50_95:.4f} / {source.mAP50:.4f}")
    return "the same predictions by the other metrics (mAP50-95 / mAP50): " + "; ".join(parts)


def format_val_report(report) -> str:
    """The headline metric (named), per-class AP, the other metrics in one line, notes, label problems, timings."""
    m = report.metrics
    lines = []
    metric = getattr(report, "metric", "coco")
    if metric == "coco":
        lines.append(_coco_table(m))
        per_class = m.per_class
    else:
        lines.append(_trainer_table(report.trainer[metric]))
        per_class = report.trainer[metric].per_class
    if per_class:
        rows = [[name, v["instances"], f"{v['AP50_95']:.4f}", f"{v['AP50']:.4f}"] for name, v in per_class.items()]
        lines.append("")
        lines.append(format_table(["class", "instances", "AP50-95", "AP50"], rows, title="Per class"))
    if getattr(report, "trainer", None):
        lines.append(_other_metrics_line(report))
    s = report.settings
    lines.append("")
    size = report.spec.size_note(s["imgsz"]) if report.spec is not None else f"imgsz {s['imgsz']}"
    lines.append(f"settings: {s['backend']} on {s['device']} ({s['precision']}), {s['mode']}, {size}, batch {s['batch']}, "
                 f"conf {s['conf']}, IoU {s['iou']}, max_det {s['max_det']}, multi-label, {s['processes']} process(es)")
    if s.get("computes"):
        lines.append(f"computed in: {ComputePrecision(**s['computes']).describe()}")
    lines.extend(format_reference(report.reference))
    d = report.dataset
    lines.append(f"ground truth: {d['ground_truth']}")
    if d["label_issues"]:
        counts = ", ".join(f"{k}: {v}" for k, v in d["label_issue_counts"].items())
        lines.append(f"label problems: {d['label_issues']} lines skipped ({counts})")
    if report.skipped:
        lines.append(f"skipped images: {len(report.skipped)}")
        lines.extend(f"  {e}" for e in report.skipped[:10])
    for note in report.notes:
        lines.append(f"note: {note}")
    t = report.times
    ms = t["ms_per_image"]
    lines.append(f"time: {t['images']} images in {t['wall_s']:.1f} s ({t['images_per_s']:.1f} images/s); ms per image: "
                 f"decode {ms['decode']:.1f}, letterbox {ms['letterbox']:.1f}, inference {ms['inference']:.1f}, "
                 f"NMS {ms['nms']:.1f}; COCO evaluation {t['eval_s']:.1f} s")
    return "\n".join(lines)


def format_audit(report: dict) -> str:
    """Summary per configuration, the per-class count table, and where images first diverge."""
    ref = report["reference"]
    rows = []
    for c in report["configs"]:
        iou, sd, raw = c["iou"] or {}, c["score_delta"] or {}, c["raw"]
        computes = (c.get("config") or {}).get("computes")
        rows.append([c["label"], computes["computes"] if computes else "-",
                     f"{c['images_differing']}/{c['images_compared']}", c["real"], c["borderline"],
                     "-" if raw["max_abs"] is None else f"{raw['max_abs']:.3g}",
                     "-" if not iou else f"{iou['min']:.4f}", "-" if not sd else f"{sd['max']:.2g}",
                     {True: "yes", False: "NO", None: "-"}[c["run_to_run_identical"]],
                     ", ".join(f"{k}: {v}" for k, v in c["first_divergence"].items()) or "-"])
    out = [format_table(["config", "computed in", "images differing", "real", "borderline", "raw max|d|", "min IoU",
                         "max |score d|", "run-to-run", "first divergence"], rows,
                        title=f"Audit of {report['images']} images against {ref['label']} (reference)")]
    classes = sorted({name for c in report["configs"] for name, v in c["per_class"].items() if v["reference"] != v["config"]})
    if classes:
        table = [[name, report["configs"][0]["per_class"].get(name, {}).get("reference", 0)]
                 + [c["per_class"].get(name, {}).get("config", 0) for c in report["configs"]] for name in classes]
        out += ["", format_table(["class", "reference"] + [c["label"] for c in report["configs"]], table,
                                 title="Detections per class where a config differs")]
    for c in report["configs"]:
        for loc in c["localization"][:5]:
            out.append(f"{c['label']}: {loc['file']}: {loc['stage']}: {loc['detail']}")
        if c.get("layer_divergence"):
            out.append(f"{c['label']}: {c['layer_divergence']['image']}: {c['layer_divergence']['detail']}")
    if report.get("truth"):
        t = report["truth"]
        rows = [[r["label"], r["role"], "-" if r["raw_max_abs"] is None else f"{r['raw_max_abs']:.3g}", r["images_differing"],
                 r["detections_differing"], r["real"], r["borderline"]] for r in t["runs"]]
        out += ["", format_table(["run", "role", "raw max|d| to fp64", "images differing", "detections differing", "real",
                                  "borderline"], rows, title=f"Distance to the float64 truth ({t['label']})")]
    for note in report.get("notes", []):
        out.append(f"note: {note}")
    if report.get("map"):
        m = report["map"]
        deltas = ", ".join(f"{c['label']}: {c['mAP_delta']:+.4f}" for c in report["configs"])
        out.append(f"mAP50-95 on {m['images']} labelled images ({m['note']}): reference {m['reference_mAP50_95']:.4f}; {deltas}")
    if report["deterministic_settings"]:
        out.append("deterministic settings: " + ", ".join(f"{k}={v}" for k, v in report["deterministic_settings"].items()))
    verdict = report["verdict"].upper()
    out.append(f"verdict: {verdict} (tolerances: {', '.join(f'{k}={v}' for k, v in report['tolerances'].items())})")
    return "\n".join(out)


def _get(obj, key: str):
    """A field of a dataclass or of its JSON dict (reports are read back from JSON too)."""
    return obj[key] if isinstance(obj, dict) else getattr(obj, key)


def _interval_text(interval: dict) -> str:
    if interval["low"] is None:
        return "-"
    return f"[{interval['low']:+.4f}, {interval['high']:+.4f}]"


def _memory(r) -> str:
    """'; peak memory 1247 MB (the converter's process: 2233 MB)' or nothing when the OS did not say."""
    memory = f"; peak memory {r.peak_rss_mb:.0f} MB" if r.peak_rss_mb else ""
    if r.converter_peak_rss_mb:
        memory += f" (the converter's process: {r.converter_peak_rss_mb:.0f} MB)"
    return memory


def format_quant_report(report) -> str:
    """Float vs int8 side by side, the accuracy-control steps, and what stayed float."""
    r = report
    rows = [
        ["mAP50-95", f"{r.float_map50_95:.4f}", f"{r.int8_map50_95:.4f}", f"{-r.drop:+.4f}"],
        ["mAP50", f"{r.float_map50:.4f}", f"{r.int8_map50:.4f}", f"{r.int8_map50 - r.float_map50:+.4f}"],
        ["detections", r.float_detections, r.int8_detections, r.int8_detections - r.float_detections],
        ["size (MB)", f"{r.float_size_bytes / 1e6:.2f}", f"{r.int8_size_bytes / 1e6:.2f}",
         f"x{r.float_size_bytes / max(r.int8_size_bytes, 1):.2f} smaller"],
        [f"latency (ms, batch 1, {r.threads} threads)", f"{r.float_latency_ms:.1f}", f"{r.int8_latency_ms:.1f}",
         f"x{r.speedup:.2f} faster"],
    ]
    out = [format_table(["", "float", "int8", "change"], rows,
                        title=f"{r.format}: {r.calib_images} calibration images ({r.calib_method}), "
                              f"drop measured on {r.val_images} other images")]
    if len(r.steps) > 1:
        out.append(format_table(["step", "nodes float", "mAP50-95", "drop", "returned to float"],
                                [[i, s.kept_float, f"{s.map50_95:.4f}", f"{r.float_map50_95 - s.map50_95:+.4f}",
                                  ", ".join(s.reverted[:3]) + (" …" if len(s.reverted) > 3 else "")]
                                 for i, s in enumerate(r.steps)], title="Accuracy control"))
    structural = f"{len(r.excluded_structural)} by structure ({r.exclude_mode})"
    out.append(f"kept float: {len(r.kept_float)} nodes: {structural}, {len(r.kept_float) - len(r.excluded_structural)} "
               f"by sensitivity")
    sat = r.saturation
    if sat:
        fixed = sat["mean_scale_growth"] is not None
        rows = [[layer["node"], layer["k"], layer["worst_pair"], f"{layer['saturated_outputs']}/{layer['outputs']}",
                 f"{layer['max_error_steps']:.2f}"]
                + ([layer["worst_pair_after"], f"x{layer['scale_growth']:.2f}"] if fixed else [])
                for layer in sat["layers"] if layer["max_error_steps"] > 0]
        title = (f"int16 pair-sum saturation (x86 without VNNI), emulated on {sat['images']} calibration images with max/127 "
                 f"scales: {sat['layers_saturating']} of {sat['layers_total']} convolutions round differently "
                 f"({sat['layers_can_saturate']} can in the worst case); this CPU: {sat['this_cpu']}")
        if fixed:
            title += (f". Written with pair-safe scales (x{sat['mean_scale_growth']:.2f} on average): "
                      f"{len(sat['residual_layers'])} can saturate")
        headers = ["layer", "K", "worst |w|+|w|", "saturated outputs", "error (steps)"] + (
            ["worst |w|+|w| now", "scale"] if fixed else [])
        out.append(format_table(headers, rows, title=title) if rows else title)
    if r.accuracy:
        rows = [[_get(a, "images"), _get(a, "interval")["images"], f"{_get(a, 'interval')['reference_map']:.4f}",
                 f"{_get(a, 'interval')['other_map']:.4f}", f"{_get(a, 'interval')['drop']:+.4f}",
                 _interval_text(_get(a, "interval")), _get(a, "verdict")["status"]]
                for a in r.accuracy]
        level = _get(r.accuracy[0], "interval")
        out.append(format_table(["images", "n", "float", "int8", "drop", f"{level['level']:.0%} interval", "verdict"], rows,
                                title=f"mAP50-95 drop with a paired bootstrap interval ({level['resamples']} resamples of "
                                      f"the images), against the budget of {r.max_drop}"))
    if getattr(r, "int8_error", None):
        out.extend(_int8_error_tables(r.int8_error))
    for note in r.notes:
        out.append(f"note: {note}")
    verdict = {"within": "within it", "over": "OVER it",
               "unresolved": "NOT shown within it (the interval straddles it)"}.get(r.verdict)
    if verdict is None:  # a report without intervals (--bootstrap 0, or read back from an older JSON)
        verdict = "inside it" if r.within_budget else "NOT inside it"
    out.append(f"held-out drop {r.drop:+.4f} against a budget of {r.max_drop}: {verdict}; written {r.output}{_memory(r)}")
    if r.float_output:
        out.append(f"the float32 file of the same conversion: {r.float_output}")
    return "\n".join(out)


def _int8_error_tables(error: dict) -> list[str]:
    """The full-integer file's error by raw map, and the layers that lose the most (quantization.tflite_error)."""
    maps = [[m["output"], "x".join(map(str, m["shape"][1:])), f"{m['sqnr_db']:.1f}",
             "-" if m.get("score_rms_error") is None else f"{m['score_rms_error']:.3f}"] for m in error["maps"]]
    out = [format_table(["raw map", "shape", "SQNR dB", "score rms error"], maps,
                        title=f"int8 against the float32 file, by raw map ({error['images']} held-out images; score "
                              f"error where the float score > 0.05)")]
    if error.get("worst_layers"):
        layers = [[w["position"], w["op"] + (" (fixed int8 grid)" if w.get("fixed_grid") else ""), f"{w['loss_db']:.1f}",
                   f"{w['sqnr_db']:.1f}", w["output"][-60:]] for w in error["worst_layers"]]
        out.append(format_table(["op", "kind", "dB lost here", "SQNR after", "tensor"], layers,
                                title="the layers that add the most error (a SiLU layer counted as one)"))
    return out


BENCH_HEADERS = ["backend", "precision", "batch", "img/s", "±", "ms/img", "decode", "letterbox", "infer", "nms",
                 "RSS MB", "size MB", "mAP50-95", "% peak", "status"]


def bench_rows(report: dict) -> list[list]:
    """One row per configuration; '-' where a value does not apply, the reason where it did not run."""
    rows = []
    for r in report["results"]:
        if r["status"] != "ok":
            rows.append([r["backend"], r["precision"], r["batch"]] + ["-"] * 11 + [f"{r['status']}: {r['reason']}"])
            continue
        st = r["stages_ms"]
        rows.append([
            r["backend"], r["precision"], r["batch"], f"{r['images_per_s']['median']:.1f}",
            f"{r['images_per_s']['spread']:.1f}", f"{r['ms_per_image']['median']:.1f}",
            f"{st['decode']:.1f}", f"{st['letterbox']:.1f}", f"{st['inference']:.1f}", f"{st['nms']:.1f}",
            f"{r['peak_rss_mb']:.0f}", f"{r['file_size_mb']:.1f}",
            f"{r['map50_95']:.4f}" if r.get("map50_95") is not None else "-",
            f"{100 * r['peak_share']:.1f}" if r.get("peak_share") is not None else "-", "ok",
        ])
    return rows


def format_bench(report: dict) -> str:
    """The benchmark as a table, with the machine and the int8 recommendation."""
    title = (f"{report['model']}: {report['gflops']:.2f} GFLOPs/image at {report['options']['imgsz']}, "
             if report.get("gflops") else f"{report['model']}: ") + f"{report['machine']['threads']} threads, " \
        f"median of {report['options']['repeats']} repeats (± half the min-max spread); stage times in ms/image"
    lines = [format_table(BENCH_HEADERS, bench_rows(report), title=title)]
    probes = sorted({(r["backend"], r["precision"], r["probe_gflops_per_s"], r["probe"]) for r in report["results"]
                     if r["status"] == "ok" and r.get("probe")}, key=lambda t: (t[0], t[1]))
    for backend, precision, peak, how in probes:
        lines.append(f"peak {backend} {precision}: " + (f"{peak:.1f} GFLOP/s ({how})" if peak else how))
    lines.append(format_int8_choice(report))
    lines.append(format_recommendation(report))
    for note in report.get("notes", []):
        lines.append(f"note: {note}")
    return "\n".join(lines)


def format_recommendation(report: dict) -> str:
    """One line: the fastest configuration with no real difference in the audit and its drop shown inside the
    budget, or why none qualified."""
    rec = report.get("recommended")
    if rec is None:
        return "recommended: not computed (--no-recommend)"
    c = rec["choice"]
    if c is None:
        return f"recommended: none: {rec['reason']}" + (f" (reference: {rec['reference']})" if rec.get("reference") else "")
    d = c["drop"]
    return (f"recommended: {c['label']}, {c['images_per_s']:.1f} img/s — no real difference to {rec['reference']} in "
            f"the audit ({rec['audit_images']} images), drop {d['drop']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}] "
            f"inside {rec['budget']} on {d['images']} images")


def format_int8_choice(report: dict) -> str:
    """One line: the fastest int8 path within the budget on this CPU kind, or why there is none."""
    choice = report.get("int8_choice")
    if not choice or not choice["candidates"]:
        return "int8: no int8 configuration in this run (add --precisions int8 with --data)"
    machine = report["machine"]
    where = f"this CPU ({machine['cpu']}, int8 dot product: {choice['cpu_kind']})"
    c = choice["choice"]
    if c is None:
        return f"int8 on {where}: none recommended: {choice['reason']}"
    iv = c.get("interval")
    drop = f"drop {c['drop']:+.4f}" + (f" [{iv['low']:+.4f}, {iv['high']:+.4f}] on {iv['images']} images" if iv else "")
    return (f"fastest int8 within {choice['budget']} mAP50-95 on {where}: {c['backend']} batch {c['batch']}, "
            f"{c['images_per_s']:.1f} img/s, x{c['speedup']:.2f} of {c['float']}, {drop}")
