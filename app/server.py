"""A local web page to try the model on one face image: `python -m app.server [--model DIR] [--port N]`.

Choose or drop an image; the page shows the face as the model sees it (48x48 greyscale, enlarged pixel for
pixel), the label and every class probability. The page posts to the JSON endpoint `/api/label` with fetch;
without JavaScript the same form posts to `/` and the answer comes back as the page itself.

Uploads are limited to MAX_UPLOAD_BYTES (a clean 413 message beyond that), decoded by the shared
`preprocess_image` (anything that is not a usable image gets its one-line reason, status 400) and kept in memory
only: nothing is written to disk. It binds 127.0.0.1 unless told otherwise: this is a local tool, not a service.
"""

import argparse
import dataclasses
import io
import sys
from typing import IO

import numpy as np
from flask import Flask, Request, Response, jsonify, render_template, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.serving import make_server

from model.contract import DEFAULT_MODEL_DIR
from model.metadata import RULE_THRESHOLD, ModelMetadata
from model.preprocess import ImageDecodeError, preprocess_image
from model.saved import Classifier, ModelLoadError, load_classifier
from pipeline.face_images import face_png, png_data_uri
from pipeline.model_files import localize_model

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
# Where the loaded model lives on the Flask app (app.extensions), for tests and tools.
CLASSIFIER_KEY: str = "facelabel.classifier"
TOO_LARGE_MESSAGE: str = f"file too large: uploads are limited to {MAX_UPLOAD_MB} MB"
NO_FILE_MESSAGE: str = "choose an image file to upload"


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
class Verdict:
    """The model's answer for one upload, with the face it actually looked at."""

    filename: str
    label: str
    probabilities: dict[str, float]
    face_uri: str
    model_version: str

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


def label_image(classifier: Classifier, data: bytes, filename: str = "") -> Verdict:
    """Label encoded image bytes exactly as a labelling run would; raises ImageDecodeError for a non-image."""
    face = preprocess_image(data)
    probabilities = classifier(face[np.newaxis])[0]
    metadata = classifier.metadata
    chosen = int(metadata.decide(probabilities[np.newaxis])[0])
    return Verdict(filename=filename, label=metadata.class_names[chosen],
                   probabilities={name: float(p) for name, p in zip(metadata.class_names, probabilities)},
                   face_uri=png_data_uri(face_png(face)), model_version=metadata.model_version)


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
    """The Flask app serving one model (a local or gs:// folder), loaded once, here, so a bad path fails now."""
    classifier = load_classifier(localize_model(str(model_dir)))
    app = Flask(__name__)
    app.request_class = InMemoryRequest
    app.config["MAX_CONTENT_LENGTH"] = MAX_UPLOAD_BYTES
    app.extensions[CLASSIFIER_KEY] = classifier

    def page(verdict: Verdict | None = None, error: str | None = None) -> str:
        return render_template("index.html", verdict=verdict, error=error, metadata=classifier.metadata,
                               decision=decision_text(classifier.metadata), field=UPLOAD_FIELD,
                               max_bytes=MAX_UPLOAD_BYTES, max_mb=MAX_UPLOAD_MB, too_large=TOO_LARGE_MESSAGE)

    @app.get("/")
    def index() -> str:
        return page()

    @app.post("/")
    def label_form() -> str | tuple[str, int]:
        """The no-JavaScript path: a plain form post answered with the whole page."""
        try:
            return page(verdict=label_image(classifier, *uploaded_file()))
        except (UploadError, ImageDecodeError) as err:
            return page(error=rejection(err)), STATUS_BAD_REQUEST

    @app.post("/api/label")
    def label_api() -> Response | tuple[Response, int]:
        """JSON: {filename, label, probabilities: {class: p}, face_uri, model_version}, or {error} with 400."""
        try:
            return jsonify(label_image(classifier, *uploaded_file()).to_json())
        except (UploadError, ImageDecodeError) as err:
            return jsonify(error=rejection(err)), STATUS_BAD_REQUEST

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(_err: RequestEntityTooLarge) -> tuple[Response | str, int]:
        if request.path.startswith(API_PREFIX):
            return jsonify(error=TOO_LARGE_MESSAGE), STATUS_TOO_LARGE
        return page(error=TOO_LARGE_MESSAGE), STATUS_TOO_LARGE

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app.server", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR),
                        help="SavedModel folder, local or gs:// (default: the shipped model)")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}: this machine only)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    args = parser.parse_args(argv)
    try:
        app = create_app(args.model)
    except (ModelLoadError, FileNotFoundError) as err:
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
