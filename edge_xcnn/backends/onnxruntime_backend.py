"""ONNX Runtime: the CPU default on edge boxes, CUDA and TensorRT providers where installed; no torch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edge_xcnn.backends.base import Backend, parse_device
from edge_xcnn.errors import BadModelFile, EdgeXcnnError, MissingDependency
from edge_xcnn.onnx_meta import INPUT_NAME, MAPS_INPUT, MAPS_OUTPUT, check_graph, parse_onnx_metadata

CPU, CUDA, TENSORRT = "CPUExecutionProvider", "CUDAExecutionProvider", "TensorrtExecutionProvider"
SHORT_NAMES = {CPU: "cpu", CUDA: "cuda", TENSORRT: "tensorrt"}
_EXPORTS = {"fp32": "the FP32 export (edge-xcnn export)", "fp16": "the .fp16.onnx (edge-xcnn export --fp16)",
            "int8": "the .int8.onnx (edge-xcnn export --int8)"}  # fmt: skip

Provider = str | tuple[str, dict[str, Any]]


def choose_providers(
    model_precision: str,
    available: list[str],
    *,
    device: str | None = None,
    providers: list[str] | None = None,
    precision: str | None = None,
) -> tuple[list[Provider], str]:
    """Execution providers (with their options) and the precision the session will compute in.

    Args:
        model_precision: the ONNX file's own: ``fp32``, ``fp16`` or ``int8`` (Q/DQ).
        available: ``onnxruntime.get_available_providers()``.
        device: ``cpu``, ``cuda[:N]`` or None (CUDA when available; for INT8, TensorRT or else the CPU).
        providers: explicit provider names, in order (overrides ``device``'s choice, not its index).
        precision: what the caller asks for; None = the file's own. FP16 from an FP32 file is possible
            on the TensorRT provider only; anything else must match the file.

    Raises:
        EdgeXcnnError: a provider that is not installed, or a precision this runtime cannot give
            (INT8 on the CUDA provider, which has no INT8 convolutions).
    """
    kind, index = parse_device(device)
    if providers:
        missing = [p for p in providers if p not in available]
        if missing:
            raise EdgeXcnnError(
                f"ONNX Runtime here offers {', '.join(available)}, not {', '.join(missing)} "
                "(the CUDA and TensorRT providers come with onnxruntime-gpu)"
            )
        names = list(providers)
    elif kind == "cpu":
        names = [CPU]
    elif kind == "cuda":
        if CUDA not in available:
            raise EdgeXcnnError(
                f"--device {device} needs ONNX Runtime's CUDA provider; this onnxruntime offers "
                f"{', '.join(available)} (pip install onnxruntime-gpu)"
            )
        names = [CUDA, CPU]
    elif model_precision == "int8":
        names = [TENSORRT, CPU] if TENSORRT in available else [CPU]
    else:
        names = [CUDA, CPU] if CUDA in available else [CPU]
    first = names[0]
    wanted = precision or model_precision
    if wanted != model_precision and not (wanted == "fp16" and model_precision == "fp32" and first == TENSORRT):
        raise EdgeXcnnError(
            f"this ONNX is {model_precision} and ONNX Runtime computes in the file's precision; for {wanted} "
            f"open {_EXPORTS.get(wanted, 'another export')}"
        )
    if wanted == "int8" and first == CUDA:
        raise EdgeXcnnError(
            "INT8 does not run on ONNX Runtime's CUDA provider (no INT8 convolutions: the Q/DQ model would run "
            "dequantized in FP32); use the CPU or TensorRT provider, or a TensorRT engine "
            "(edge-xcnn export --format engine --int8)"
        )
    options: dict[str, dict[str, Any]] = {
        CUDA: {"device_id": index},
        TENSORRT: {
            "device_id": index,
            "trt_fp16_enable": wanted in ("fp16", "int8"),
            "trt_int8_enable": wanted == "int8",  # the Q/DQ nodes give the scales: no calibration table
        },
    }
    return [(name, options[name]) if name in options else name for name in names], wanted


class OnnxRuntimeBackend(Backend):
    """An exported model in an ``onnxruntime.InferenceSession`` (CPU provider unless told otherwise)."""

    def __init__(
        self,
        path: Path,
        providers: list[str] | None = None,
        threads: int | None = None,
        device: str | None = None,
        precision: str | None = None,
    ) -> None:
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise MissingDependency("onnxruntime", "export") from e
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            # One model call at a time: no inter-op pool (the run's other threads need the cores).
            options.inter_op_num_threads = 1
            if threads > 1:
                # Workers that spin between ops take the cores the run's decoder and writer need: VGG-16
                # at 32x32 on bikes.mp4 with 2 threads ran end to end at 168 FPS spinning, 190 not (alone
                # 261 against 237); the default threads (no count given) keep ONNX Runtime's spinning.
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Intra-op threads (None: ONNX Runtime's default, one per physical core): the runner's ThreadPlan
        # reads it to give decoding and encoding the rest of the machine.
        self.threads: int | None = threads or None
        # INT8 on x86 CPUs without VNNI (AVX2 only: AMD Zen 1-3, older Xeons): ONNX Runtime's U8S8
        # kernels add pairs of products in 16 bits (VPMADDUBSW), which saturates. Measured on a 2-core
        # AMD EPYC (AVX2 only), default model, 1,000 validation images: box agreement with FP32 93.9%
        # on that fast path, 97.5% with this option (U8U8 kernels; the Intel Xeon with VNNI: 97.6%).
        # ONNX Runtime applies it only where the overflow exists, so VNNI CPUs and float models are
        # unaffected, and the model file stays what TensorRT reads.
        options.add_session_config_entry("session.x64quantprecision", "1")
        options.log_severity_level = 3  # errors only: the TensorRT provider's build chatter is not ours to show
        try:
            # A first session on the CPU reads the metadata, which decides the providers.
            probe = ort.InferenceSession(str(path), options, providers=[CPU])
        except Exception as e:  # ORT raises its own Fail/InvalidGraph/... types for damaged files
            raise BadModelFile(f"{path} is not an ONNX model ONNX Runtime can load ({type(e).__name__})") from e
        described = parse_onnx_metadata(probe.get_modelmeta().custom_metadata_map, str(path))
        self.meta = described.meta
        check_graph(
            self.meta,
            [(i.name, i.shape, i.type) for i in probe.get_inputs()],
            [o.name for o in probe.get_outputs()],
            str(path),
        )
        chosen, self.precision = choose_providers(
            described.precision, ort.get_available_providers(),
            device=device, providers=providers, precision=precision,
        )  # fmt: skip
        self.session = probe if chosen == [CPU] else ort.InferenceSession(str(path), options, providers=chosen)
        first = self.session.get_providers()[0]
        self.name = f"onnxruntime {SHORT_NAMES.get(first, first)}"
        self.outputs = [o.name for o in self.session.get_outputs()]
        # The box check's classifier, carried in the metadata (edge_xcnn.export.onnx_export): a session of its own.
        self._maps_session = None
        if described.map_classifier is not None:
            try:
                self._maps_session = ort.InferenceSession(described.map_classifier, options, providers=chosen)
            except Exception as e:  # ORT's own error types, as above
                raise BadModelFile(f"{path}: its box-check classifier does not load ({type(e).__name__})") from e

    def _run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        results = dict(zip(self.outputs, self.session.run(self.outputs, {INPUT_NAME: batch}), strict=True))
        return results["logits"], results.get("heatmap")

    @property
    def can_classify_maps(self) -> bool:
        return self._maps_session is not None

    def _classify_maps(self, maps: np.ndarray) -> np.ndarray:
        return self._maps_session.run([MAPS_OUTPUT], {MAPS_INPUT: maps})[0]  # type: ignore[union-attr]

    def close(self) -> None:
        self.session = None
        self._maps_session = None
