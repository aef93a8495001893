"""``run --config cameras.yaml``: the file's schema, checked before anything starts."""

from __future__ import annotations

import pytest

from edge_xcnn.stream.cameras import ConfigError, TrackerSettings, load_config

GOOD = """
model: model.onnx
batch: 4
metrics_port: 9100
outputs: [mqtt://broker/site-a]
cameras:
  - name: gate
    uri: rtsp://viewer:${CAM_PW}@10.0.0.2/main
    outputs: [runs/gate.mp4]
    threshold: 0.4
    box_evidence: 0.2
    stride: 2
    tracker: {name: sort, track_thresh: 0.5, track_buffer: 10, match_iou: 0.2, fill_gaps: 4}
  - uri: rtsp://10.0.0.3/yard
"""


def write(tmp_path, text):
    path = tmp_path / "cameras.yaml"
    path.write_text(text)
    return path


def test_a_good_file(tmp_path):
    config = load_config(write(tmp_path, GOOD), {"CAM_PW": "pw"})
    gate, yard = config.cameras
    assert (config.model, config.batch, config.metrics_port, config.outputs) == (
        "model.onnx", 4, 9100, ("mqtt://broker/site-a",),
    )  # fmt: skip
    assert gate.uri == "rtsp://viewer:pw@10.0.0.2/main" and gate.outputs == ("runs/gate.mp4",)
    assert (gate.threshold, gate.stride, gate.tracker) == (0.4, 2, TrackerSettings("sort", 0.5, 10, 0.2, 4))
    assert gate.box_evidence == 0.2 and yard.box_evidence is None  # None: the model's own
    assert yard.name == "10.0.0.3_yard" and yard.threshold is None and yard.tracker == TrackerSettings()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "cameras:\n  - uri: a.mp4\n    treshold: 0.5\n",
            r"cameras\[0\]: unknown key 'treshold' \(did you mean 'threshold'\?\)",
        ),
        ("camera:\n  - uri: a.mp4\n", r"unknown key 'camera' \(did you mean 'cameras'\?\)"),
        ("cameras: []\n", "at least one camera"),
        ("cameras:\n  - name: x\n", "needs a 'uri'"),
        ("cameras:\n  - uri: rtsp://h/a\n    stride: 0\n", "stride must be from 1"),
        ("cameras:\n  - uri: rtsp://h/a\n    threshold: 1.5\n", r"threshold must be in \(0.0, 1.0\)"),
        ("cameras:\n  - uri: rtsp://h/a\n    tracker: {name: deepsort}\n", "name must be one of"),
        ("cameras:\n  - uri: rtsp://h/a\n    tracker: {buffer: 3}\n", r"did you mean 'track_buffer'"),
        ("cameras:\n  - uri: rtsp://h/a\n    stride: two\n", "must be a whole number"),
        ("cameras:\n  - uri: rtsp://h/a\n    tracker: {fill_gaps: -1}\n", "fill_gaps must be from 0"),
        ("cameras:\n  - uri: rtsp://h/a\n    box_evidence: 1.5\n", r"box_evidence must be in \[0.0, 0.999\]"),
        ("cameras:\n  - {name: a, uri: rtsp://h/a}\n  - {name: a, uri: rtsp://h/b}\n", "unique"),
        ("cameras:\n  - {name: 'a b', uri: rtsp://h/a}\n", "name must be"),
        ("cameras:\n  - uri: rtsp://u:${NOPE}@h/a\n", "environment has no NOPE"),
        ("batch: 0\ncameras:\n  - uri: rtsp://h/a\n", "batch must be from 1"),
        ("backend: triton\ncameras:\n  - uri: rtsp://h/a\n", "needs 'server"),
        ("cameras:\n  - uri: rtsp://h/a\n  bad indent: [\n", "line"),
        ("- just a list\n", "expected a mapping"),
    ],
)
def test_bad_files_are_one_line(tmp_path, text, message):
    with pytest.raises(ConfigError, match=message) as error:
        load_config(write(tmp_path, text), {})
    assert "\n" not in str(error.value) and str(tmp_path) in str(error.value)


def test_a_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="No such file"):
        load_config(tmp_path / "nope.yaml")


def test_yaml_tags_never_build_objects(tmp_path):
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, "cameras: !!python/object/apply:os.system ['true']\n"), {})


def test_a_cameras_own_settings_reach_its_runner(tmp_path):
    """What a camera file sets per camera is what that camera's runner gets (``Fleet.options``)."""
    from edge_xcnn.stream.fleet import Fleet

    config = load_config(write(tmp_path, GOOD), {"CAM_PW": "pw"})
    fleet = Fleet(config, None)
    gate, yard = (fleet.options(camera, 0) for camera in config.cameras)
    assert (gate.localize.box_evidence, gate.localize.threshold, gate.vid_stride) == (0.2, 0.4, 2)
    assert (gate.tracker.name, gate.tracker.lost_track_buffer, gate.tracker.fill_gaps) == ("sort", 10, 4)
    assert yard.localize.box_evidence is None and yard.tracker.fill_gaps is None  # the model's / run's defaults
