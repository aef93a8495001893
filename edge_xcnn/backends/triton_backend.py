"""A remote model on an inference server speaking the KServe v2 protocol (Triton, MLServer, KServe).

``--backend triton --server HOST:PORT[/MODEL]``: gRPC (Triton's port 8001) by default, HTTP/REST with
``http://HOST:PORT`` (port 8000). The server holds the model (``edge-xcnn export --format triton``
writes its repository); this box only preprocesses, sends the N x C x H x W float32 batch and reads
``logits`` and ``heatmap`` back, so everything after inference (boxes, tracks, sinks) is unchanged.

The model's metadata (classes, input size, polarity, threshold) comes from the server's model
configuration, where the exported repository stores it (Triton's ``parameters { key: "edge_xcnn" }``),
or from ``--model FILE``, a local copy of the exported ONNX or checkpoint, for servers that do not
expose a model configuration (MLServer, KServe). Either way the server's declared input shape is
checked against it before the first frame.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from edge_xcnn.backends.base import Backend
from edge_xcnn.errors import BadModelFile, EdgeXcnnError, MissingDependency
from edge_xcnn.meta import META_KEY, ModelMeta

DEFAULT_MODEL_NAME = "edge_xcnn"
INPUT, OUTPUTS = "images", ("logits", "heatmap")


class ServerError(EdgeXcnnError):
    """An inference server that cannot be reached, lacks the model, or answers with something else."""


@dataclass(frozen=True)
class ServerAddress:
    """``host:port`` and protocol of the server, and the model's name there."""

    protocol: str  # grpc or http
    host: str
    port: int
    model: str = DEFAULT_MODEL_NAME

    @property
    def url(self) -> str:
        return f"{self.host}:{self.port}"

    def __str__(self) -> str:
        scheme = "http://" if self.protocol == "http" else ""
        return f"{scheme}{self.url}/{self.model}"


def parse_server(server: str) -> ServerAddress:
    """``host:8001[/model]`` (gRPC), ``grpc://host:8001[/model]`` or ``http://host:8000[/model]``."""
    text = server.strip()
    if "://" not in text:
        text = "grpc://" + text
    parts = urlsplit(text)
    protocol = parts.scheme.lower()
    if protocol not in ("grpc", "http"):
        raise EdgeXcnnError(f"--server takes host:port (gRPC) or http://host:port, got {protocol}://")
    if parts.username or parts.password:
        raise EdgeXcnnError("--server: credentials in the address are not supported (put the server behind a VPN/TLS)")
    try:
        port = parts.port or (8001 if protocol == "grpc" else 8000)
    except ValueError as e:
        raise EdgeXcnnError(f"--server {server!r}: the port must be a number from 1 to 65535") from e
    if not parts.hostname:
        raise EdgeXcnnError(f"--server {server!r}: give a host, e.g. 127.0.0.1:8001")
    model = parts.path.strip("/") or DEFAULT_MODEL_NAME
    return ServerAddress(protocol, parts.hostname, port, model)


def local_meta(path: Path) -> ModelMeta:
    """The metadata of a local ONNX export or checkpoint (no weights are loaded into a runtime)."""
    if path.suffix.lower() == ".onnx":
        import onnxruntime as ort

        from edge_xcnn.onnx_meta import parse_onnx_metadata

        try:
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own Fail/InvalidGraph types for damaged files
            raise BadModelFile(f"{path} is not an ONNX model ONNX Runtime can load ({type(e).__name__})") from e
        return parse_onnx_metadata(session.get_modelmeta().custom_metadata_map, str(path)).meta
    from edge_xcnn.checkpoint import read_meta

    return read_meta(path)


class TritonBackend(Backend):
    """Inference on a KServe v2 server through ``tritonclient`` (gRPC or HTTP)."""

    def __init__(
        self, server: str, meta_file: Path | None = None, *, timeout: float = 10.0, max_batch: int | None = None
    ) -> None:
        self.address = parse_server(server)
        self.timeout = timeout
        try:
            if self.address.protocol == "grpc":
                import tritonclient.grpc as client_module
            else:
                import tritonclient.http as client_module
        except ImportError as e:
            raise MissingDependency("tritonclient", "triton") from e
        self._module = client_module
        try:
            from tritonclient.utils import InferenceServerException
        except ImportError as e:
            raise MissingDependency("tritonclient", "triton") from e
        # What the client raises for a server-side or transport problem; anything else is a bug of ours.
        self._errors: tuple[type[BaseException], ...] = (InferenceServerException, OSError)
        try:
            if self.address.protocol == "grpc":
                self._client = client_module.InferenceServerClient(url=self.address.url)
            else:
                self._client = client_module.InferenceServerClient(
                    url=self.address.url, connection_timeout=timeout, network_timeout=timeout
                )
            ready = self._client.is_model_ready(self.address.model)
        except self._errors as e:
            raise ServerError(f"inference server {self.address.url}: not reachable ({_short(e)})") from e
        if not ready:
            raise ServerError(f"inference server {self.address.url} has no ready model {self.address.model!r}")
        config_meta, config_batch = self._from_config()
        if meta_file is not None:
            self.meta = local_meta(meta_file)
        elif config_meta is not None:
            self.meta = config_meta
        else:
            raise BadModelFile(
                f"{self.address}: the server does not expose the model's edge-xcnn metadata; pass --model with the "
                "ONNX the server's model was exported from"
            )
        self.max_batch = max_batch or config_batch
        self._check_metadata()
        self.name = f"triton {self.address.protocol}"
        self.precision = "fp32"  # what the client sends and receives; the server may compute in less

    def _from_config(self) -> tuple[ModelMeta | None, int | None]:
        """Triton's model configuration: our metadata parameter and ``max_batch_size`` (None elsewhere)."""
        try:
            if self.address.protocol == "grpc":
                config = self._client.get_model_config(self.address.model, as_json=True)["config"]
            else:
                config = self._client.get_model_config(self.address.model)
        except self._errors:  # MLServer and KServe have no model-configuration endpoint: not an error
            return None, None
        stored = (config.get("parameters") or {}).get(META_KEY, {}).get("string_value")
        batch = int(config.get("max_batch_size") or 0) or None
        return (ModelMeta.from_json(stored) if stored else None), batch

    def _check_metadata(self) -> None:
        """The server's declared input must take what the metadata says we will send."""
        try:
            if self.address.protocol == "grpc":
                described = self._client.get_model_metadata(self.address.model, as_json=True)
            else:
                described = self._client.get_model_metadata(self.address.model)
        except self._errors as e:
            raise ServerError(f"{self.address}: cannot read the model's metadata ({_short(e)})") from e
        inputs = {i["name"]: i for i in described.get("inputs", [])}
        if INPUT not in inputs:
            raise BadModelFile(
                f"{self.address}: the served model takes {', '.join(inputs) or 'nothing'}, not {INPUT!r}"
            )
        shape = [int(d) for d in inputs[INPUT].get("shape", [])]
        expected = [self.meta.channels, *self.meta.input_size]
        if len(shape) != 4 or any(s > 0 and s != e for s, e in zip(shape[1:], expected, strict=True)):
            raise BadModelFile(
                f"{self.address}: the served model's input is {shape}, the metadata says N x "
                f"{' x '.join(map(str, expected))}: is it the same model?"
            )

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        step = self.max_batch or len(batch)
        parts = [self._infer(batch[i : i + step]) for i in range(0, len(batch), step)]
        logits = np.concatenate([p[0] for p in parts])
        heatmaps = [p[1] for p in parts]
        return logits, None if any(h is None for h in heatmaps) else np.concatenate(heatmaps)  # type: ignore[arg-type]

    def _infer(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        m = self._module
        tensor = m.InferInput(INPUT, list(batch.shape), "FP32")
        wanted = [m.InferRequestedOutput(name) for name in OUTPUTS]
        if self.address.protocol == "http":
            # JSON tensors: MLServer's REST side does not read Triton's binary-data extension.
            tensor.set_data_from_numpy(batch, binary_data=False)
            wanted = [m.InferRequestedOutput(name, binary_data=False) for name in OUTPUTS]
        else:
            tensor.set_data_from_numpy(batch)
        timeout = {"client_timeout": self.timeout} if self.address.protocol == "grpc" else {}
        try:
            result = self._client.infer(self.address.model, [tensor], outputs=wanted, **timeout)
        except self._errors as e:
            raise ServerError(f"inference on {self.address} failed: {_short(e)}") from e
        logits = result.as_numpy("logits")
        if logits is None:
            raise ServerError(f"{self.address} answered without 'logits'")
        return logits.astype(np.float32, copy=False), result.as_numpy("heatmap")

    def close(self) -> None:
        client = getattr(self, "_client", None)
        if client is not None:
            client.close()
            self._client = None


def _short(error: BaseException) -> str:
    """The first line of a client error, without the transport's long debug string."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return text[:200]
