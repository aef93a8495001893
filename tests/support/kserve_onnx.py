"""An MLServer runtime serving an ONNX file with ONNX Runtime: a real KServe v2 server for the triton tests.

MLServer (the KServe v2 server of Seldon) has no ONNX runtime of its own any more; this is the small
custom runtime its docs describe. It runs inside MLServer's own virtual environment (``.ci/run`` makes
``.venv-mlserver``), never in the project's: ``mlserver start FOLDER`` with ``FOLDER/settings.json``
and ``FOLDER/model-settings.json`` (written by ``tests/test_triton_backend.py``).
"""

import numpy as np
import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.types import InferenceRequest, InferenceResponse, MetadataModelResponse, MetadataTensor


class OnnxModel(MLModel):
    """``parameters.uri`` names the ONNX file; inputs and outputs are the graph's own names."""

    async def load(self) -> bool:
        self.session = ort.InferenceSession(self.settings.parameters.uri, providers=["CPUExecutionProvider"])
        self.output_names = [o.name for o in self.session.get_outputs()]
        return True

    async def metadata(self) -> MetadataModelResponse:
        def described(node):
            shape = [d if isinstance(d, int) else -1 for d in node.shape]
            return MetadataTensor(name=node.name, datatype="FP32", shape=shape)

        return MetadataModelResponse(
            name=self.name,
            platform="onnxruntime_onnx",
            versions=["1"],
            inputs=[described(i) for i in self.session.get_inputs()],
            outputs=[described(o) for o in self.session.get_outputs()],
        )

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        feeds = {i.name: NumpyCodec.decode_input(i).astype(np.float32) for i in payload.inputs}
        results = self.session.run(self.output_names, feeds)
        return InferenceResponse(
            model_name=self.name,
            outputs=[NumpyCodec.encode_output(n, v) for n, v in zip(self.output_names, results, strict=True)],
        )
