"""Where a TFLite file's time goes, op by op: the file cut after op k, for growing k, timed on LiteRT.

LiteRT's Python interpreter has no per-op profiler, and XNNPACK fuses what it takes into partitions, so the cost of
one op is read as the difference between two prefixes of the graph: ``ops[:k]`` with its last op's output as the
graph's output (TFLite files list their ops in execution order, so every prefix is a valid graph). Each prefix is
timed at batch 1 with the interpreter's default delegate (XNNPACK) and ``--threads``, median of ``--repeats``; a
step's time is the prefix's minus the previous one's (single steps are noisy — a shared machine moves them by
~1 ms; blocks of ops are what to read). Why: a full-integer YOLO26n/YOLOv10n file is much less than 1.8x faster
than its float file (BENCHMARKS.md, "Full-integer TFLite on every family"), and this says which ops hold it.

Runs in the converter's environment (TensorFlow's flatbuffer tools):

    .venv-tflite/bin/python bench/tflite_op_time.py FILE.tflite [--steps 30] [--from K --to K2]

``--steps`` cuts the graph into that many even blocks; ``--from/--to`` times every op between two positions.
"""

from __future__ import annotations

import argparse
import collections
import os
import tempfile
import time

import numpy as np


def _op_names(model) -> list[str]:
    from tensorflow.lite.python import schema_py_generated as schema

    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    return [names.get(max(int(c.builtinCode), int(c.deprecatedBuiltinCode)), "?") for c in model.operatorCodes]


def _prefix_ms(path: str, k: int, threads: int, repeats: int, scratch: str) -> float:
    """Median ms of one invoke of ``path`` cut after its op ``k``."""
    from ai_edge_litert.interpreter import Interpreter
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(path)
    graph = model.subgraphs[0]
    graph.operators = graph.operators[:k]
    graph.outputs = np.array([int(graph.operators[-1].outputs[0])], np.int32)
    flatbuffer_utils.write_model(model, scratch)
    interpreter = Interpreter(model_path=scratch, num_threads=threads)
    interpreter.allocate_tensors()
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], np.zeros(detail["shape"], detail["dtype"]))
    for _ in range(3):
        interpreter.invoke()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        interpreter.invoke()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def main() -> int:
    """The command line of the module docstring: one line per cut, the ops of the block it adds."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tflite")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--from", dest="first", type=int, default=None)
    parser.add_argument("--to", dest="last", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(args.tflite)
    ops, codes = model.subgraphs[0].operators, _op_names(model)
    if args.first is not None:
        cuts = list(range(max(args.first, 1), min(args.last or len(ops), len(ops)) + 1))
    else:
        cuts = sorted({int(round(x)) for x in np.linspace(len(ops) / args.steps, len(ops), args.steps)})
    with tempfile.TemporaryDirectory(prefix="yoloparity-optime-") as folder:
        _time_cuts(args, ops, codes, cuts, os.path.join(folder, "prefix.tflite"))
    return 0


def _time_cuts(args, ops, codes: list[str], cuts: list[int], scratch: str) -> None:
    """One line per cut: the prefix's time, the step from the previous cut and the ops of the block it adds."""
    previous_k, previous_ms = (cuts[0] - 1, None) if args.first is not None else (0, 0.0)
    print(f"{args.tflite}: {len(ops)} ops, {args.threads} threads, median of {args.repeats}")
    for k in cuts:
        ms = _prefix_ms(args.tflite, k, args.threads, args.repeats, scratch)
        block = collections.Counter(codes[op.opcodeIndex] for op in ops[previous_k:k])
        step = "" if previous_ms is None else f"{ms - previous_ms:+6.2f}"
        print(f"ops[:{k:4d}] {ms:7.2f} ms {step:>7}  {', '.join(f'{n} {c}' for n, c in block.most_common(6))}", flush=True)
        previous_k, previous_ms = k, ms


if __name__ == "__main__":
    raise SystemExit(main())
