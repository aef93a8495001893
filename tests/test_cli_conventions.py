"""The command line's shared conventions (issue 12 item 7): one spelling for outputs, --version, list
options, flags shown as flags, help within 100 columns, generated files under runs/, normal file modes."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from edge_xcnn import __version__

COMMANDS = ("run", "demo", "export", "bench", "eval", "train", "compare")


def cli(*args: str, cwd=None, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "100", "TERM": "dumb"}
    return subprocess.run([sys.executable, "-m", "edge_xcnn", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)  # fmt: skip


def test_version():
    done = cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"edge-xcnn {__version__}"


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_flags_as_flags_within_100_columns(command):
    done = cli(command, "--help")
    assert done.returncode == 0, done.stderr
    assert "<bool>" not in done.stdout
    assert max(len(line) for line in done.stdout.splitlines()) <= 100


@pytest.mark.parametrize("command", ["run", "demo", "export", "train"])
def test_where_results_go_is_o_or_out_everywhere(command):
    text = cli(command, "--help").stdout
    assert "--out" in text and " -o " in text


def test_list_options_take_commas_or_repeats(default_model_onnx, tmp_path):
    for batch in (["--batch", "1,2"], ["--batch", "1", "--batch", "2"]):
        out = tmp_path / f"bench{len(batch)}.json"
        done = cli(
            "bench", "-m", str(default_model_onnx), *batch, "--seconds", "0.2", "--images", "0", "--json", str(out)
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert sorted({row["batch"] for row in json.loads(out.read_text())}) == [1, 2]
        table = [line for line in done.stdout.splitlines() if line.strip()]
        assert max(len(line) for line in table) <= 100 and not any("…" in line for line in table)
        assert sum("onnxruntime cpu" in line for line in table) == 2  # one line per row: nothing wrapped
    bad = cli("bench", "-m", str(default_model_onnx), "--batch", "1,zero")
    assert bad.returncode == 2 and "--batch takes whole numbers" in bad.stdout + bad.stderr


@pytest.mark.integration
def test_exports_go_under_runs(tmp_path):
    done = cli("export", cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    written = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert written == ["runs/export/synthetic.onnx"], written


def test_saved_calibration_ranges_are_an_ordinary_file(default_model_onnx, tmp_path):
    import numpy as np

    from edge_xcnn.calib.quantize import quantize_int8

    frames = np.random.default_rng(0).random((16, 3, 64, 64), dtype=np.float32)
    ranges = tmp_path / "m.calib-test.json"
    quantize_int8(default_model_onnx, tmp_path / "m.int8.onnx", frames, ranges=ranges)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(ranges.stat().st_mode) == 0o666 & ~umask  # 0644 under the usual umask 022, not 0600


def test_saved_checkpoints_are_ordinary_files(tmp_path):
    """safetensors' writer recreates its file 0600: a trained model must still be shareable like any output."""
    from edge_xcnn.checkpoint import DEFAULT_MODEL, load_model, read_meta, save_checkpoint

    model, meta = load_model(DEFAULT_MODEL)
    saved = save_checkpoint(tmp_path / "copy.safetensors", model, meta)
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o666 & ~umask
    assert read_meta(saved) == meta
