"""The JSON Lines shard files and the merge: streamed, resumable after a torn write, formatted as --save-json was."""

from __future__ import annotations

import json

import pytest

from yoloparity.io.jsonl import MergedOutputs, ShardWriter, lines_of, read_chunks

ROWS = [{"file": f"img{k}.jpg", "width": 640, "height": 480,
         "detections": [{"box": [1.5, 2.25, 30.125, 40.0], "score": 0.5 + k / 100, "class_id": k % 3,
                         "class_name": ["person", "bus", "cat"][k % 3]}] * (k % 3)} for k in range(9)]
ROWS[4] = {"file": "img4.jpg", "error": "img4.jpg: truncated JPEG (no end-of-image marker)", "stage": "input"}


@pytest.mark.unit
def test_an_interrupted_shard_resumes_after_its_last_whole_row(tmp_path):
    files = [r["file"] for r in ROWS]
    writer = ShardWriter(str(tmp_path), 1, 2, "fp-a")
    assert writer.open(files, resume=True) == 0
    for row in ROWS[:5]:
        writer.write(row)
    writer.close()
    with open(writer.partial, "a") as fh:
        fh.write('{"file":"img5.jpg","wid')  # killed mid-line
    again = ShardWriter(str(tmp_path), 1, 2, "fp-a")
    assert again.finished() is None
    assert again.open(files, resume=True) == 5
    for row in ROWS[5:]:
        again.write(row)
    summary = again.finish({"images": 4})
    assert [json.loads(line) for line in open(again.path)] == ROWS
    assert summary["images"] == 8 and summary["skipped"] == [ROWS[4]["error"]] and summary["failed"] == []
    assert summary["per_class"] == {"bus": 2, "cat": 6}  # img4 (a bus row) was skipped
    assert ShardWriter(str(tmp_path), 1, 2, "fp-a").finished()["images"] == 8
    assert ShardWriter(str(tmp_path), 1, 2, "fp-other").finished() is None  # other settings: not reused


@pytest.mark.unit
def test_rows_that_do_not_continue_the_shard_are_not_kept(tmp_path):
    writer = ShardWriter(str(tmp_path), 0, 1, "fp")
    writer.open(["a.jpg", "b.jpg"], resume=False)
    writer.write({"file": "a.jpg", "width": 1, "height": 1, "detections": []})
    writer.close()
    assert ShardWriter(str(tmp_path), 0, 1, "fp").open(["x.jpg", "b.jpg"], resume=True) == 0


@pytest.mark.unit
def test_the_merge_writes_jsonl_bytes_and_the_json_array_as_json_dump_does(tmp_path):
    parts = []
    for k in range(3):
        path = tmp_path / f"part{k}.jsonl"
        path.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in ROWS[3 * k:3 * k + 3]))
        parts.append(path)
    out = MergedOutputs(str(tmp_path / "all.jsonl"), str(tmp_path / "all.json"))
    for path in parts:
        out.add(read_chunks(str(path), size=7))  # chunks cut mid-line
    out.close()
    assert out.rows == 9
    assert (tmp_path / "all.jsonl").read_bytes() == b"".join(p.read_bytes() for p in parts)
    assert (tmp_path / "all.json").read_text() == json.dumps([r for r in ROWS if "error" not in r], indent=1)
    empty = MergedOutputs(None, str(tmp_path / "none.json"))
    empty.close()
    assert json.loads((tmp_path / "none.json").read_text()) == []
    failed = MergedOutputs(str(tmp_path / "half.jsonl"), None)
    failed.add([b"{}\n"])
    failed.close(ok=False)
    assert not (tmp_path / "half.jsonl").exists() and not list(tmp_path.glob(".half.jsonl*"))


@pytest.mark.unit
def test_lines_of_chunks_cut_anywhere():
    assert list(lines_of([b"ab\nc", b"d\n", b"", b"e"])) == [b"ab\n", b"cd\n", b"e"]
