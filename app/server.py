"""A local web page to try the model on one face image: `python -m app.server [--model DIR] [--port N]`.

Choose or drop a photo; the page shows it with a box around every face found and, for each face, the face as the
model sees it (found, aligned, 48x48 greyscale, enlarged pixel for pixel), the label and every class probability,
exactly as a labelling run with `--faces all` computes them; a photo without a face says so. The page posts to the JSON endpoint `/api/label` with fetch;
without JavaScript the same form posts to `/` and the answer comes back as the page itself.

Uploads are limited to MAX_UPLOAD_BYTES (a clean 413 message beyond that), decoded by the shared
`model.faces.decode_for_faces` (anything that is not a usable image gets its one-line reason, status 400) and kept
in memory only: nothing is written to disk. It binds 127.0.0.1 unless told otherwise: this is a local tool, not a service.
"""

# First: TensorFlow starts here with its C++ start-up noise filtered (see model/console.py).
from model import console  # isort: skip

import base64
import dataclasses
import io
import sys
from typing import IO

import numpy as np
from flask import Flask, Request, Response, jsonify, render_template, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.serving import make_server

from PIL import Image

from model.align import find_face_inputs
from model.blazeface import FaceDetectorUnavailable
from model.contract import DEFAULT_MODEL_DIR
from model.faces import BLAZEFACE, MTCNN, FaceFinder, decode_for_faces
from model.metadata import RULE_THRESHOLD, ModelMetadata
from model.mirror import served
from model.preprocess import ImageDecodeError
from model.saved import Classifier, ModelLoadError, load_classifier
from pipeline.face_images import face_png, png_data_uri
from pipeline.model_files import localize_model
from pipeline.rows import NO_FACE

# How the page names the detector that found a face (their confidences are not on one scale).
DETECTOR_NAMES: dict[str, str] = {MTCNN: "MTCNN", BLAZEFACE: "BlazeFace"}

DEFAULT_HOST: str = "127.0.0.1"
DEFAULT_PORT: int = 8000
BYTES_PER_MB: int = 1024 * 1024
# Far above any face photo, far below what could strain the machine; checked before the body is read.
MAX_UPLOAD_MB: int = 20
MAX_UPLOAD_BYTES: int = MAX_UPLOAD_MB * BYTES_PER_MB
UPLOAD_FIELD: str = "image"
API_PREFIX: str = "/api/"
STATUS_BAD_REQUEST: int = 400
STATUS_TOO_LARGE: int = 413
EXIT_USER_ERROR: int = 2
# Where the loaded model and face finder live on the Flask app (app.extensions), for tests and tools.
CLASSIFIER_KEY: str = "facelabel.classifier"
FINDER_KEY: str = "facelabel.face_finder"
# The photo shown with its face boxes: at most this many pixels per side, JPEG at this quality.
PREVIEW_MAX_SIDE: int = 720
PREVIEW_QUALITY: int = 85
TOO_LARGE_MESSAGE: str = f"file too large: uploads are limited to {MAX_UPLOAD_MB} MB"
# The page's count line for a face-sized image in which no face was found, taken whole as the job does (its
# labels.csv row says faces_found 0): not "1 face found".
WHOLE_IMAGE_SUMMARY: str = "no face found: a face-sized image, taken whole as the face"
NO_FILE_MESSAGE: str = f"choose an image file to upload (a multipart/form-data field named {UPLOAD_FIELD!r})"


class InMemoryRequest(Request):
    """A request whose file uploads are parsed into memory, never spooled to a temporary file on disk.

    Memory is bounded by MAX_CONTENT_LENGTH, which Flask checks before the body is read.
    """

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None) -> IO[bytes]:
        return io.BytesIO()


class UploadError(ValueError):
    """The request carries no usable file; the message is shown to the person as it is."""


@dataclasses.dataclass(frozen=True)
class FaceVerdict:
    """One face found in the upload: where it is, the face the network saw, and the model's answer for it."""

    rank: int  # 1 = the largest face
    box: list[float]  # x, y, width, height as fractions of the photo's width and height (0..1), for drawing
    pixel_box: list[int]  # x, y, width, height in the upright photo's pixels, as in labels.csv's face_box
    score: float | None  # the face detector's confidence; None when a face-sized image was taken whole
    detector: str | None  # which detector found the face (model.faces.MTCNN or BLAZEFACE); None as for score
    label: str
    probabilities: dict[str, float]
    face_uri: str


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The model's answer for one upload: every face found, and the photo they were found in.

    label, probabilities and face_uri are those of the largest face, as a labelling run's default row; for a
    photo without a face the label is NO_FACE, with no probabilities and no face.
    """

    filename: str
    label: str
    probabilities: dict[str, float]
    face_uri: str
    model_version: str
    photo_uri: str
    faces: list[FaceVerdict]

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def photo_preview_uri(image: Image.Image) -> str:
    """The upright photo, at most PREVIEW_MAX_SIDE pixels per side, as a JPEG data: URI for the page."""
    preview = image.copy()
    preview.thumbnail((PREVIEW_MAX_SIDE, PREVIEW_MAX_SIDE))
    buffer = io.BytesIO()
    preview.convert("RGB").save(buffer, format="JPEG", quality=PREVIEW_QUALITY)
    return f"data:image/jpeg;base64,{base64.b64encode(buffer.getvalue()).decode('ascii')}"


def label_image(classifier: Classifier, finder: FaceFinder, data: bytes, filename: str = "") -> Verdict:
    """Find, align and label every face in encoded image bytes exactly as a labelling run with --faces all does.

    Raises ImageDecodeError for a file that is not a usable image.
    """
    decoded = decode_for_faces(data)
    image = decoded.image
    metadata = classifier.metadata
    [inputs] = find_face_inputs(finder, [image], all_faces=True, aligned_crops=metadata.aligned_crops)
    probabilities = classifier(np.stack([f.pixels for f in inputs])) if inputs else np.zeros((0, len(metadata.class_names)))
    chosen = metadata.decide(probabilities) if inputs else []
    width, height = decoded.original_size
    faces = []
    for face_input, p, c in zip(inputs, probabilities, chosen):
        x, y, w, h = face_input.original_box(decoded)
        faces.append(FaceVerdict(
            rank=face_input.rank, box=[x / width, y / height, w / width, h / height],
            pixel_box=[round(v) for v in (x, y, w, h)],
            score=None if face_input.face is None else round(face_input.face.score, 4),
            detector=None if face_input.face is None else face_input.face.detector,
            label=metadata.class_names[int(c)],
            probabilities={name: float(v) for name, v in zip(metadata.class_names, p)},
            face_uri=png_data_uri(face_png(face_input.pixels))))
    first = faces[0] if faces else None
    return Verdict(filename=filename, label=first.label if first else NO_FACE,
                   probabilities=first.probabilities if first else {}, face_uri=first.face_uri if first else "",
                   model_version=metadata.model_version, photo_uri=photo_preview_uri(image), faces=faces)


def decision_text(metadata: ModelMetadata) -> str:
    """The model's decision rule in words, so a label next to a probability under 0.5 is not a surprise."""
    if metadata.decision_rule == RULE_THRESHOLD:
        other = [name for name in metadata.class_names if name != metadata.positive_class][0]
        return (f"{metadata.positive_class} when p_{metadata.positive_class} \u2265 {metadata.threshold:.3f}, "
                f"else {other}")
    return "the most probable class"


def uploaded_file() -> tuple[bytes, str]:
    """(bytes, file name) of the upload; raises UploadError without one, RequestEntityTooLarge over the limit."""
    upload = request.files.get(UPLOAD_FIELD)
    if upload is None or not upload.filename:
        raise UploadError(NO_FILE_MESSAGE)
    return upload.read(), upload.filename


def rejection(err: Exception) -> str:
    """The one line a person reads when their file cannot be labelled."""
    return f"cannot label this file: {err}" if isinstance(err, ImageDecodeError) else str(err)


def create_app(model_dir: str) -> Flask:
    """The Flask app serving one model (a local or gs:// folder), loaded once, here, so a bad path fails now; served
    as the job's default mode serves it, each face averaged with its mirror image (model.mirror)."""
    classifier = served(load_classifier(localize_model(str(model_dir))), True)
    finder = FaceFinder()
    app = Flask(__name__)
    app.request_class = InMemoryRequest
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES
    app.extensions[CLASSIFIER_KEY] = classifier
    app.extensions[FINDER_KEY] = finder

    def page(verdict: Verdict | None = None, error: str | None = None) -> str:
        return render_template("index.html", verdict=verdict, error=error, metadata=classifier.metadata,
                               decision=decision_text(classifier.metadata), field=UPLOAD_FIELD,
                               max_bytes=MAX_UPLOAD_BYTES, max_mb=MAX_UPLOAD_MB, too_large=TOO_LARGE_MESSAGE,
                               WHOLE_IMAGE_SUMMARY=WHOLE_IMAGE_SUMMARY, detector_names=DETECTOR_NAMES)

    @app.get("/")
    def index() -> str:
        return page()

    @app.post("/")
    def label_form() -> str | tuple[str, int]:
        """The no-JavaScript path: a plain form post answered with the whole page."""
        try:
            return page(verdict=label_image(classifier, finder, *uploaded_file()))
        except (UploadError, ImageDecodeError) as err:
            return page(error=rejection(err)), STATUS_BAD_REQUEST

    @app.post("/api/label")
    def label_api() -> Response | tuple[Response, int]:
        """JSON: {filename, label, probabilities: {class: p}, face_uri, model_version, photo_uri,
        faces: [{rank, box, pixel_box, score, label, probabilities, face_uri}]}, or {error} with 400."""
        try:
            return jsonify(label_image(classifier, finder, *uploaded_file()).to_json())
        except (UploadError, ImageDecodeError) as err:
            return jsonify(error=rejection(err)), STATUS_BAD_REQUEST

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_err: RequestEntityTooLarge) -> tuple[Response | str, int]:
        if request.path.startswith(API_PREFIX):
            return jsonify(error=TOO_LARGE_MESSAGE), STATUS_TOO_LARGE
        return page(error=TOO_LARGE_MESSAGE), STATUS_TOO_LARGE

    return app


MAX_PORT: int = 65535  # TCP port numbers are 16 bits (RFC 793)


def main(argv: list[str] | None = None) -> int:
    console.configure_logging()
    parser = console.OneLineParser(
        prog="python -m app.server",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR),
                        help="SavedModel folder, local or gs:// (default: the shipped model)")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= MAX_PORT:  # the socket would refuse a negative one with a trace, wrap a larger one
        parser.error(f"--port must be 0 (any free port) to {MAX_PORT}, got {args.port}")
    try:
        app = create_app(args.model)
    except (ModelLoadError, FileNotFoundError, FaceDetectorUnavailable) as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    try:
        server = make_server(args.host, args.port, app, threaded=True)
    except SystemExit:  # werkzeug has printed why it cannot listen, e.g. "Port 8000 is in use by another program"
        return EXIT_USER_ERROR
    version = app.extensions[CLASSIFIER_KEY].metadata.model_version
    print(f"facelabel: open http://{args.host}:{server.server_port}/ (model {version}); Ctrl+C stops", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
