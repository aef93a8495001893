"""A real KServe v2 server (MLServer, from its own venv) serving one ONNX file on 127.0.0.1, for the tests."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MLSERVER = ROOT / ".venv-mlserver" / "bin" / "mlserver"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mlserver_available() -> bool:
    return MLSERVER.exists()


@dataclass
class KServeServer:
    """``mlserver start FOLDER`` with the ``kserve_onnx`` runtime; gRPC and HTTP on free ports."""

    folder: Path
    onnx: Path
    name: str = "edge_xcnn"
    process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.grpc_port, self.http_port, metrics = free_port(), free_port(), free_port()
        # parallel_workers 0: inference in the server process; MLServer's worker processes break on uvloop 0.23.
        settings = {"parallel_workers": 0, "host": "127.0.0.1", "http_port": self.http_port,
                    "grpc_port": self.grpc_port, "metrics_port": metrics, "debug": False}  # fmt: skip
        (self.folder / "settings.json").write_text(json.dumps(settings))
        model = {"name": self.name, "implementation": "kserve_onnx.OnnxModel", "parameters": {"uri": str(self.onnx)}}
        (self.folder / "model-settings.json").write_text(json.dumps(model))
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent)}
        env.pop("VIRTUAL_ENV", None)
        log = open(self.folder / "mlserver.log", "wb")  # noqa: SIM115 - the child keeps it
        command = [str(MLSERVER), "start", str(self.folder)]
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.folder)
        log.close()
        deadline = time.monotonic() + timeout
        import tritonclient.grpc as grpcclient

        client = grpcclient.InferenceServerClient(url=self.grpc)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"mlserver exited: {(self.folder / 'mlserver.log').read_text()[-2000:]}")
            try:
                if client.is_model_ready(self.name):
                    client.close()
                    return
            except Exception:
                pass
            time.sleep(0.25)
        raise RuntimeError("mlserver did not get the model ready in time")

    @property
    def grpc(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
            self.process = None
