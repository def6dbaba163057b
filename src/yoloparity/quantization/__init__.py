"""``quantize``: int8 with calibration and an accuracy budget proven by mAP on held-out images — ONNX Runtime QDQ,
OpenVINO NNCF and full-integer TFLite (:mod:`.formats`), structural exclusions, streamed calibration, the int16
pair-sum saturation of CPUs without VNNI, and the float/int8 comparison with intervals.
"""
