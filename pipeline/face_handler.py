"""A RunInference model handler for face detection: the first model of the labelling cascade.

RunInference with this handler finds the faces in batches of decoded images (`model.faces.FaceFinder`, MTCNN);
the aligned faces then go to a second RunInference with the classifier's handler (`pipeline.model_handler`),
Beam's multi-model (cascade) pattern. Like the classifier, the finder is built once per worker process and shared
by its threads, and Beam's inference metrics (batch sizes, latency) are kept under its own namespace.
"""

from collections.abc import Iterable, Sequence
from typing import Any

from apache_beam.ml.inference.base import ModelHandler, PredictionResult

from model.faces import FaceFinder
from model.preprocess import DecodedImage
from pipeline.model_handler import limit_tensorflow_threads

# Images per detection batch: MTCNN's per-call cost is spread over the batch (a 48x48 crop costs about 70 ms
# alone and 5 ms in a batch of 32 on 2 cores); a batch of photos decoded for faces (RGB, longer side at most
# 1280 px: 3.5 MiB for a 4:3 photo, 4.7 MiB for a square one) holds about 115 MiB, at most 150 MiB.
FINDER_BATCH_SIZE: int = 32
METRICS_NAMESPACE: str = "facelabel_faces"


class FaceFinderHandler(ModelHandler[DecodedImage, PredictionResult, FaceFinder]):
    """Runs the face detector on DecodedImage batches; each result's inference is that image's list of Faces
    (largest first, in the decoded image's pixels) and its example the DecodedImage itself, for alignment."""

    def __init__(self, inference_threads: int = 0, batch_size: int = FINDER_BATCH_SIZE):
        super().__init__()
        self._inference_threads = inference_threads
        self._batch_size = batch_size

    def load_model(self) -> FaceFinder:
        limit_tensorflow_threads(self._inference_threads)
        return FaceFinder()

    def run_inference(self, batch: Sequence[DecodedImage], model: FaceFinder,
                      inference_args: dict[str, Any] | None = None) -> Iterable[PredictionResult]:
        found = model.find([decoded.image for decoded in batch])
        return [PredictionResult(example=decoded, inference=faces) for decoded, faces in zip(batch, found)]

    def get_num_bytes(self, batch: Sequence[DecodedImage]) -> int:
        return sum(d.image.size[0] * d.image.size[1] * len(d.image.getbands()) for d in batch)

    def batch_elements_kwargs(self) -> dict[str, int]:
        return {"min_batch_size": 1, "max_batch_size": self._batch_size}

    def get_metrics_namespace(self) -> str:
        return METRICS_NAMESPACE
