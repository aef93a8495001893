"""The box check: each box's own evidence read by the model's classifier, in the runner, on a real clip."""

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from edge_xcnn.backends import open_backend
from edge_xcnn.box_evidence import box_probabilities, evidence_maps, pick_boxes
from edge_xcnn.checkpoint import DEFAULT_MODEL, DEFAULT_ONNX, read_meta
from edge_xcnn.cli import app
from edge_xcnn.meta import ModelMeta
from edge_xcnn.stream.pipeline import Runner, RunOptions
from edge_xcnn.stream.step import LocalizeOptions
from edge_xcnn.train.datasets.moving import write_moving_digits


def test_evidence_maps_keep_the_box_and_its_margin_and_blank_the_rest():
    heat = np.linspace(-1, 1, 16 * 20, dtype=np.float32).reshape(16, 20)
    maps = evidence_maps(heat, np.array([[4.5, 3.0, 9.2, 7.0], [18.0, 0.0, 20.0, 2.0]]), polarity=1, margin=1)
    assert maps.shape == (2, 1, 16, 20) and maps.dtype == np.float32
    inside = np.zeros((16, 20), bool)
    inside[2:8, 3:11] = True  # fractional edges widen to whole pixels, then one pixel of margin
    assert np.array_equal(maps[0, 0][inside], heat[inside]) and (maps[0, 0][~inside] == -1).all()
    corner = np.zeros((16, 20), bool)
    corner[0:3, 17:20] = True  # clipped at the map's edge
    assert np.array_equal(maps[1, 0][corner], heat[corner]) and (maps[1, 0][~corner] == -1).all()
    flipped = evidence_maps(heat, np.array([[0, 0, 1, 1]]), polarity=-1, margin=0)
    assert flipped[0, 0, 0, 0] == heat[0, 0] and (flipped[0, 0].ravel()[1:] == 1).all()  # -polarity: no evidence


def test_box_probabilities_are_the_top_class_sigmoid():
    probability, label = box_probabilities(np.array([[0.0, 2.0, -1.0], [-3.0, -4.0, -5.0]]))
    assert label.tolist() == [1, 0]
    assert np.allclose(probability, [1 / (1 + np.exp(-2.0)), 1 / (1 + np.exp(3.0))])


def test_box_evidence_is_stored_in_the_model_and_checked():
    meta = read_meta(DEFAULT_MODEL)
    assert open_backend(DEFAULT_ONNX).meta == meta
    assert meta.box_evidence == pytest.approx(0.3)  # the recipe's choice (README, sessions 14 and 21)
    assert ModelMeta.from_json(meta.to_json()) == meta
    older = json.loads(meta.to_json())
    del older["box_evidence"]
    older["format_version"] = 1
    assert ModelMeta.from_dict(older).box_evidence == 0.0  # a format-1 file: no check
    with pytest.raises(ValueError, match="box_evidence"):
        meta.replace(box_evidence=1.0)
    with pytest.raises(ValueError, match="box_evidence"):
        LocalizeOptions(box_evidence=-0.1)


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """Validation digits over held-out footage: the case the check was chosen for, never the demo's clip."""
    return write_moving_digits(tmp_path_factory.mktemp("clip"), split="val", frames=40, seed=5, footage="held-out")


def run_jsonl(clip, backend, path, box_evidence):
    options = RunOptions(
        sources=[str(clip.video)], json_path=path, overwrite=True, localize=LocalizeOptions(box_evidence=box_evidence)
    )
    summary = Runner(options, backend).run()
    return summary, [json.loads(line) for line in path.read_text().splitlines()]


def test_the_runner_drops_boxes_the_classifier_does_not_see_a_digit_in_and_names_the_rest(clip, tmp_path):
    backend = open_backend(DEFAULT_ONNX, threads=1)
    checked_summary, checked = run_jsonl(clip, backend, tmp_path / "checked.jsonl", None)  # the model's own: 0.3
    plain_summary, plain = run_jsonl(clip, backend, tmp_path / "plain.jsonl", 0.0)
    _, strict = run_jsonl(clip, backend, tmp_path / "strict.jsonl", 0.999)
    assert checked_summary.box_check == "p >= 0.3" and plain_summary.box_check == "off"
    assert "box check: p >= 0.3" in checked_summary.runtime_line()
    counts = [sum(len(r["objects"]) for r in rows) for rows in (plain, checked, strict)]
    assert counts[0] > counts[1] > counts[2]  # each threshold keeps fewer boxes
    labels = clip.labels  # track id -> digit
    gt = np.loadtxt(clip.gt, delimiter=",")
    right = named = 0
    for row in checked:
        assert all("label" in o for o in row["objects"])  # every kept box carries its own class
        truth = gt[gt[:, 0] == row["frame"] + 1]
        for o in row["objects"]:
            x0, y0, x1, y1 = o["xyxy"]
            for t in truth:
                tx, ty, tw, th = t[2:6]
                inter = max(0, min(x1, tx + tw) - max(x0, tx)) * max(0, min(y1, ty + th) - max(y0, ty))
                if inter / ((x1 - x0) * (y1 - y0) + tw * th - inter) >= 0.5:
                    named += 1
                    right += int(o["label"]) == int(labels[int(t[1])])
    assert named >= 40 and right / named >= 0.6  # boxes on digits are named by their digit (chance: 10%)


def test_a_runtime_without_the_classifier_runs_unchecked_and_says_so(clip, tmp_path):
    import onnx

    from edge_xcnn.meta import MAP_CLASSIFIER_KEY

    model = onnx.load(str(DEFAULT_ONNX))  # an export from before the box check: no classifier beside the graph
    kept = [p for p in model.metadata_props if p.key != MAP_CLASSIFIER_KEY]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    onnx.save(model, str(tmp_path / "older.onnx"))
    summary, rows = run_jsonl(clip, open_backend(tmp_path / "older.onnx", threads=1), tmp_path / "older.jsonl", None)
    assert summary.box_check.startswith("not available")
    _, plain = run_jsonl(clip, open_backend(DEFAULT_ONNX, threads=1), tmp_path / "plain.jsonl", 0.0)
    assert [r["objects"] for r in rows] == [r["objects"] for r in plain]


def test_bad_box_evidence_is_one_line_and_exit_2(tmp_path):
    result = CliRunner().invoke(app, ["run", "missing.mp4", "--box-evidence", "1.5", "--headless"])
    assert result.exit_code == 2
    assert "--box-evidence must be in [0, 1)" in result.output and "Traceback" not in result.output


def test_pick_boxes_keeps_one_box_per_object_the_most_probable():
    boxes = np.array([[0, 0, 20, 20], [2, 2, 12, 12], [30, 30, 40, 40], [0, 0, 21, 21]], np.float32)
    # The inner box is read best, so the two boxes around it (the same object, cut at a lower threshold) go.
    assert pick_boxes(boxes, np.array([0.5, 0.9, 0.4, 0.3])).tolist() == [1, 2]
    assert sorted(pick_boxes(boxes, np.array([0.9, 0.5, 0.4, 0.3])).tolist()) == [0, 2]
    assert pick_boxes(np.zeros((0, 4)), np.zeros(0)).tolist() == []
    with pytest.raises(ValueError, match="refine_step"):
        LocalizeOptions(refine_step=1.0)
