"""The service recipes: the systemd unit passes systemd's own checker, the example camera file loads."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge_xcnn.stream.cameras import load_config

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_unit_verifies(tmp_path):
    # The unit points at /opt/edge-xcnn; verify a copy that points at this venv's edge-xcnn instead.
    executable = Path(sys.executable).parent / "edge-xcnn"
    unit = (DEPLOY / "edge-xcnn.service").read_text().replace("/opt/edge-xcnn/bin/edge-xcnn", str(executable))
    (tmp_path / "edge-xcnn.service").write_text(unit)
    done = subprocess.run(
        ["systemd-analyze", "verify", str(tmp_path / "edge-xcnn.service")], capture_output=True, text=True
    )
    problems = [line for line in (done.stdout + done.stderr).splitlines() if "edge-xcnn.service" in line]
    assert done.returncode == 0 and not problems, problems
    assert "ExecStart=" in unit and "run --config /etc/edge-xcnn/cameras.yaml" in unit
    assert "SuccessExitStatus=143" in unit and "RestartPreventExitStatus=2" in unit


def test_example_cameras_file_is_valid():
    config = load_config(DEPLOY / "cameras.example.yaml", {"GATE_PASSWORD": "pw"})
    assert [c.name for c in config.cameras] == ["gate", "yard"]
    assert config.metrics_port == 9100 and config.outputs[0].startswith("mqtt://")


@pytest.mark.parametrize("name", ["Dockerfile", "Dockerfile.jetson"])
def test_dockerfiles_run_the_config(name):
    text = (DEPLOY / name).read_text()
    assert 'CMD ["run", "--config", "/config/cameras.yaml"]' in text and "STOPSIGNAL SIGTERM" in text
    for copied in ("edge_xcnn", "train", "export", "calib"):  # the package dirs pyproject.toml maps
        assert f"COPY {copied} ./{copied}" in text
