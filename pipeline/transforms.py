"""The labelling job's transforms, in the order data flows through them.

    ReadImages:  MatchFiles -> [SkipUnchanged] -> ReadFiles   (FileKey, bytes); unreadable files and folders -> errors
    LabelImages: Decode -> FindFaces (RunInference, face detector) -> AlignFaces -> Classify (RunInference,
                 the SavedModel) -> ToRows                     LabelRow; undecodable images -> errors
    WriteOutputs (in pipeline.write_outputs): labels, errors and summary.json, sorted and sharded at scale

Every matched file ends up exactly once in `labels.csv` or `errors.csv`: each step that can fail on one file
sends that file to a dead-letter output (Beam's `with_exception_handling`) with a short reason instead of
failing the run.
"""

import logging
import time
from collections.abc import Callable

import apache_beam as beam
import numpy as np
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.ml.inference.base import KeyedModelHandler, PredictionResult, RunInference

from model.align import face_inputs
from model.faces import decode_for_faces
from model.lite import PRECISION_FLOAT32
from model.metadata import ModelMetadata
from model.preprocess import DecodedImage, ImageDecodeError, preprocess_image
from pipeline.face_handler import FaceFinderHandler
from pipeline.inputs import InputSpec, ListInput, display_path, file_key
from pipeline.listing import PERMISSION_REASON
from pipeline.model_handler import ClassifierHandler
from pipeline.previous import SkipUnchanged
from pipeline.rows import (FACE_MODES, FACES_ALL, FACES_LARGEST, FACES_NONE, ErrorRow, FaceInfo, FaceKey, FileKey,
                           no_face_row, to_label_row)
from pipeline.write_outputs import WriteOutputs  # noqa: F401  (re-exported: moved to pipeline.write_outputs)

# Files larger than this are not read into memory: no face image is anywhere near it.
MAX_FILE_BYTES: int = 256 * 1024 * 1024


# How often each worker process logs how many images it has labelled.
PROGRESS_INTERVAL_SECONDS: float = 10.0

log = logging.getLogger("facelabel")


class FileTooLargeError(ValueError):
    pass


class ReportProgress(beam.DoFn):
    """Logs a periodic 'N faces labelled' line per worker process, so a long run shows it is moving.

    Plain log lines rather than a progress bar: they read the same on a terminal, in a file and in Dataflow's
    worker logs. Emits nothing.
    """

    def setup(self) -> None:
        self._count = 0
        self._started = self._last = None

    def process(self, _row):
        self._count += 1
        now = time.monotonic()
        if self._started is None:  # the rate counts from this worker's first row, not from its start-up
            self._started = self._last = now
        elif now - self._last >= PROGRESS_INTERVAL_SECONDS:
            self._last = now
            log.info("progress: %d faces labelled by this worker (%.1f faces/s)", self._count,
                     (self._count - 1) / (now - self._started))  # the rows after the first, over the time since
        return ()


def read_file(readable: fileio.ReadableFile) -> tuple[FileKey, bytes]:
    """(file key, whole file content), refusing files over MAX_FILE_BYTES before reading them."""
    size = readable.metadata.size_in_bytes
    if size > MAX_FILE_BYTES:
        raise FileTooLargeError(f"file too large to be a face image: {size:,} bytes")
    return file_key(readable.metadata), readable.read()


def preprocess_keyed(item: tuple[FileKey, bytes]) -> tuple[FileKey, np.ndarray]:
    key, data = item
    return key, preprocess_image(data)


def error_reason(exc_type: type, exc_repr: str, traceback_lines: list[str]) -> str:
    """A one-line reason from a dead letter: our own errors' message alone, others with their type name."""
    last = traceback_lines[-1].strip() if traceback_lines else exc_repr
    detail = last.split(": ", 1)[1] if ": " in last else last
    if isinstance(exc_type, type) and issubclass(exc_type, (ImageDecodeError, FileTooLargeError)):
        reason = detail
    elif isinstance(exc_type, type) and issubclass(exc_type, PermissionError):
        reason = PERMISSION_REASON
    else:
        reason = f"{getattr(exc_type, '__name__', exc_type)}: {detail}"
    return " ".join(reason.split())


def dead_letter_to_error(path_of: Callable[[object], str]) -> Callable[[tuple], ErrorRow]:
    """Turn Beam's dead letter (element, (type, repr, traceback)) into an ErrorRow."""
    def convert(dead_letter: tuple) -> ErrorRow:
        element, (exc_type, exc_repr, traceback_lines) = dead_letter
        return ErrorRow(path_of(element), error_reason(exc_type, exc_repr, traceback_lines))
    return convert


def readable_path(readable: fileio.ReadableFile) -> str:
    return display_path(readable.metadata.path)


def keyed_path(item: tuple[FileKey, object]) -> str:
    return item[0].path


class ReadImages(beam.PTransform):
    """List the input (`pipeline.inputs`: folder, file or pattern) and read each file's bytes.

    Returns {"matched": paths, "images": (FileKey, bytes), "errors": ErrorRow, "carried": LabelRow}. Folders
    that cannot be listed and broken links count as matched and become errors. Paths in every output are
    `display_path`s. With `previous` (an earlier run's labels.csv) and the served model's `metadata`, files
    unchanged since it was written, and labelled by this model, are not read again: their earlier rows come out
    as "carried" (see `pipeline.previous`).
    """

    def __init__(self, source: InputSpec, previous: str | None = None, metadata: ModelMetadata | None = None,
                 faces_mode: str = FACES_LARGEST):
        super().__init__()
        if previous and metadata is None:
            raise ValueError("earlier labels need the served model's metadata to be carried over")
        self._source = source
        self._previous = previous
        self._metadata = metadata
        self._faces_mode = faces_mode

    def expand(self, pbegin):
        listed = (pbegin
                  | "Input" >> beam.Create([self._source])
                  | "MatchFiles" >> beam.ParDo(ListInput()).with_outputs(ListInput.ERRORS, main="files"))
        # One listing element fans out here, so that reading and labelling spread over the workers.
        matched = listed.files | "SpreadFiles" >> beam.Reshuffle()
        to_read, carried = matched, pbegin | "NothingCarried" >> beam.Create([])
        if self._previous:
            to_read, carried = matched | "SkipUnchanged" >> SkipUnchanged(self._previous, self._metadata,
                                                                               self._faces_mode)
        listing_errors = listed[ListInput.ERRORS]
        read = to_read | "ReadFiles" >> ReadFiles()
        return {"matched": (matched | "MatchedPaths" >> beam.Map(lambda m: display_path(m.path)),
                            listing_errors | "ErrorPaths" >> beam.Map(lambda row: row.path))
                | "AllMatched" >> beam.Flatten(),
                "carried": carried,
                "images": read["images"],
                "errors": (read["errors"], listing_errors) | "AllReadErrors" >> beam.Flatten()}


class ReadFiles(beam.PTransform):
    """Matched files (FileMetadata) -> {"images": (FileKey, bytes), "errors": ErrorRow}.

    A file that vanished or became unreadable since it was matched, or is too large, becomes an error row.
    """

    def expand(self, matched):
        images, failed = (
            matched
            | "OpenFiles" >> fileio.ReadMatches(compression=CompressionTypes.UNCOMPRESSED, skip_directories=False)
            | "Read" >> beam.Map(read_file).with_exception_handling())
        return {"images": images, "errors": failed | "ReadErrors" >> beam.Map(dead_letter_to_error(readable_path))}


def decode_keyed(item: tuple[FileKey, bytes]) -> tuple[FileKey, DecodedImage]:
    key, data = item
    return key, decode_for_faces(data)


class AlignFaces(beam.DoFn):
    """(FileKey, PredictionResult of the face finder) -> (FaceKey, network input) per face to label, or a
    no_face LabelRow (tag NO_FACE) for an image without one; see `model.align.face_inputs` for the rule."""

    NO_FACE = "no_face"

    def __init__(self, all_faces: bool, model_version: str, class_count: int, aligned_crops: bool = False):
        self._all_faces = all_faces
        self._aligned_crops = aligned_crops
        self._model_version = model_version
        self._class_count = class_count

    def process(self, item: tuple[FileKey, PredictionResult]):
        key, result = item
        decoded, faces = result.example, result.inference
        inputs = face_inputs(decoded.image, faces, self._all_faces, self._aligned_crops)
        if not inputs:
            yield beam.pvalue.TaggedOutput(self.NO_FACE, no_face_row(key, self._model_version, self._class_count))
        for face_input in inputs:
            face = face_input.face  # None: a face thumbnail taken whole, in which the detector found none
            info = FaceInfo(face_input.rank, len(faces), face_input.original_box(decoded),
                            None if face is None else face.score, "" if face is None else face.detector)
            yield FaceKey(key, info), face_input.pixels


class LabelImages(beam.PTransform):
    """(FileKey, image bytes) -> {"labels": LabelRow, "errors": ErrorRow} with the model at model_uri.

    Two models in a row (Beam's cascade pattern), each with its own RunInference and model handler:
        Decode -> FindFaces (face detector) -> AlignFaces -> Classify (the SavedModel) -> ToRows
    With faces=FACES_NONE there is no detector: Preprocess (the whole image) -> Classify -> ToRows.
    model_uri None: the shipped default model (see ClassifierHandler); precision: its SavedModel or int8 copy;
    mirror_average: each face averaged with its mirror image (model.mirror).
    model_version and class_count (of the model as served) fill the rows of images without a face;
    aligned_crops is the model's `ModelMetadata.aligned_crops` (how face-sized images reach it).
    """

    def __init__(self, model_uri: str | None, min_batch_size: int | None = None, max_batch_size: int | None = None,
                 inference_threads: int = 0, faces: str = FACES_LARGEST, model_version: str = "",
                 class_count: int = 2, precision: str = PRECISION_FLOAT32, aligned_crops: bool = False,
                 mirror_average: bool = False):
        super().__init__()
        if faces not in FACE_MODES:
            raise ValueError(f"faces must be one of {FACE_MODES}, got {faces!r}")
        self._faces = faces
        self._model_version = model_version
        self._class_count = class_count
        self._aligned_crops = aligned_crops
        self._inference_threads = inference_threads
        self._handler = KeyedModelHandler(
            ClassifierHandler(model_uri, min_batch_size, max_batch_size, inference_threads, precision,
                              mirror_average))

    def expand(self, images):
        if self._faces == FACES_NONE:
            faces, failed = images | "Preprocess" >> beam.Map(preprocess_keyed).with_exception_handling()
            no_face = images.pipeline | "NoFaceSearch" >> beam.Create([])
        else:
            decoded, failed = images | "Decode" >> beam.Map(decode_keyed).with_exception_handling()
            aligned = (decoded
                       | "FindFaces" >> RunInference(KeyedModelHandler(FaceFinderHandler(self._inference_threads)))
                       | "AlignFaces" >> beam.ParDo(AlignFaces(self._faces == FACES_ALL, self._model_version,
                                                               self._class_count, self._aligned_crops)).with_outputs(
                           AlignFaces.NO_FACE, main="faces"))
            faces, no_face = aligned.faces, aligned[AlignFaces.NO_FACE]
        classified = (faces
                      | "Classify" >> RunInference(self._handler)
                      | "ToRows" >> beam.Map(to_label_row))
        # Counted before the Flatten: on the DirectRunner the rows reach a step after it only once every image is
        # done, so progress counted there came too late to show (measured: every row at the run's last second).
        _ = classified | "ReportProgress" >> beam.ParDo(ReportProgress())
        labels = (classified, no_face) | "WithNoFace" >> beam.Flatten()
        return {"labels": labels,
                "errors": failed | "PreprocessErrors" >> beam.Map(dead_letter_to_error(keyed_path))}
