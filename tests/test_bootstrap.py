"""The paired bootstrap behind every int8 drop: exact point figures, honest intervals, verdicts that say why."""

from __future__ import annotations

import copy

import pytest

from yoloparity.data.datasets import load_dataset
from yoloparity.evaluate.bootstrap import DropInterval, PerImageEvaluation, budget_verdict, paired_bootstrap
from yoloparity.evaluate.coco import coco_evaluate
from yoloparity.evaluate.validator import ValOptions, predict_and_score
from yoloparity.yolo_model import load_model


@pytest.fixture(scope="module")
def scored(assets, yolov5n_onnx):
    """yolov5n's validation results on 40 coco-val-mini images (square 640, as quantize measures)."""
    dataset = load_dataset(str(assets / "coco-val-mini" / "data.yaml"))
    dataset = dataset.subset(dataset.images[:40])
    with load_model(yolov5n_onnx, backend="onnxruntime") as model:
        score = predict_and_score(model, dataset, ValOptions(batch=8, mode="square"))
    return dataset, score.results


def test_point_figures_equal_the_evaluator_on_the_set_and_on_any_subset(scored):
    dataset, results = scored
    per_image = PerImageEvaluation(dataset, results)
    ids = [e.id for e in dataset.images]
    whole = coco_evaluate(dataset.gt, results, dataset.names, dataset.category_ids)
    assert per_image.map(ids) == pytest.approx((whole.mAP50_95, whole.mAP50), abs=1e-12)
    half = dataset.subset(dataset.images[::2])
    half_ids = {e.id for e in half.images}
    sub = coco_evaluate(half.gt, [r for r in results if r["image_id"] in half_ids], half.names, half.category_ids)
    assert per_image.map(sorted(half_ids)) == pytest.approx((sub.mAP50_95, sub.mAP50), abs=1e-12)
    # an image drawn twice counts twice: its ground truth and detections both double, so the figure moves
    assert per_image.map(ids + ids[:5]) != per_image.map(ids)


def test_identical_models_have_a_zero_interval_and_a_worse_one_a_positive_drop(scored):
    dataset, results = scored
    ids = [e.id for e in dataset.images]
    a = PerImageEvaluation(dataset, results)
    same = paired_bootstrap(a, PerImageEvaluation(dataset, copy.deepcopy(results)), ids, resamples=50)
    assert (same.drop, same.low, same.high) == (0.0, 0.0, 0.0)  # paired: the same draw scores both
    assert budget_verdict(same, 0.0).status == "within"
    # the worse model: every box shifted by 4 px (localization error, as int8 rounding makes it)
    shifted = copy.deepcopy(results)
    for row in shifted:
        row["bbox"][0] += 4.0
    worse = paired_bootstrap(a, PerImageEvaluation(dataset, shifted), ids, resamples=100)
    assert worse.drop > 0.01
    assert worse.low <= worse.drop <= worse.high and worse.low > 0
    assert worse.images == 40 and worse.resamples == 100
    again = paired_bootstrap(a, PerImageEvaluation(dataset, shifted), ids, resamples=100)
    assert (again.low, again.high) == (worse.low, worse.high)  # a fixed seed: the same command, the same interval
    nothing = PerImageEvaluation(dataset, [])
    assert nothing.map(ids) == (0.0, 0.0)
    assert paired_bootstrap(a, nothing, ids, resamples=10).drop == pytest.approx(a.map(ids)[0])


def _interval(drop, low, high, n=100):
    return DropInterval(n, 0.3, 0.3 - drop, drop, low, high, 0.95, 200, 0.5, 0.5 - drop)


def test_verdicts():
    assert budget_verdict(_interval(0.002, -0.001, 0.004), 0.005).status == "within"
    over = budget_verdict(_interval(0.02, 0.012, 0.03), 0.005)
    assert over.status == "over" and over.images_needed is None
    unresolved = budget_verdict(_interval(0.002, -0.004, 0.008), 0.005)
    assert unresolved.status == "unresolved"
    assert unresolved.images_needed == 400  # half-width 0.006 must shrink to 0.003: (0.006 / 0.003)^2 x 100
    assert "not resolvable with 100 images" in unresolved.text and "400" in unresolved.text
    point_over = budget_verdict(_interval(0.007, 0.001, 0.012), 0.005)
    assert point_over.status == "unresolved" and "over" in point_over.text and point_over.images_needed == 900


@pytest.mark.slow
def test_quantize_scores_images_read_once_exactly_as_val_scores_them(assets, yolov5n_onnx):
    """The one-pass scorer (images letterboxed once, raw outputs decoded with the validators' thresholds) gives the
    figure `val`'s own path gives on the same images: square, batch 1, conf 0.001."""
    from yoloparity.data.datasets import load_dataset
    from yoloparity.quantization.evaluation import score_model
    from yoloparity.quantization.image_set import load_quant_images

    data = str(assets / "coco-val-mini" / "data.yaml")
    with load_model(yolov5n_onnx, backend="onnxruntime") as model:
        images = load_quant_images(load_dataset(data), data, model.spec, 640, 8, 16)
        held = [image.entry for image in images.held_out]
        dataset = load_dataset(data)
        subset = dataset.subset(held)
        expected = predict_and_score(model, subset, ValOptions(batch=1, mode="square"))
    scores = score_model(yolov5n_onnx, images, 2)
    assert scores.map(images.held_out_ids()) == pytest.approx((expected.metrics.mAP50_95, expected.metrics.mAP50), abs=1e-9)
    assert scores.detections(images.held_out_ids()) == sum(len(r.scores) for r in expected.records)


def test_a_drop_at_the_budget_is_not_resolvable_by_any_practical_number_of_images():
    verdict = budget_verdict(_interval(0.0049, -0.005, 0.015), 0.005)
    assert verdict.status == "unresolved" and verdict.images_needed is None and "no practical number" in verdict.text
    assert budget_verdict(_interval(0.002, None, None), 0.005).status == "within"  # --bootstrap 0: the point alone
