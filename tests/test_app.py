"""`app.server` through its HTTP interface (Flask's test client): the page, the JSON endpoint, the plain-form
fallback, and what happens with non-images, missing files, oversized uploads, and a bad model or port."""

import base64
import io
import json
import socket
import tempfile

import numpy as np
import pytest
from PIL import Image
from werkzeug import formparser

from app import server
from conftest import box_overlap, encode, paste_face, scene, shared_face_files, synthetic_face
from model.preprocess import preprocess_image

DATA_URI_PREFIX = "data:image/png;base64,"
# An upload over the limit, and one large enough that Werkzeug would normally spool it to a temporary file.
OVERSIZED_BYTES = server.MAX_UPLOAD_BYTES + 1024
SPOOL_SIZED_PIXELS = 1200


@pytest.fixture(scope="module")
def app(tiny_model_dir):
    return server.create_app(str(tiny_model_dir))


@pytest.fixture
def client(app):
    return app.test_client()


def upload(client, path: str, data: bytes, filename: str = "face.png"):
    return client.post(path, data={server.UPLOAD_FIELD: (io.BytesIO(data), filename)},
                       content_type="multipart/form-data")


def decode_face(uri: str) -> np.ndarray:
    assert uri.startswith(DATA_URI_PREFIX)
    image = Image.open(io.BytesIO(base64.b64decode(uri[len(DATA_URI_PREFIX):])))
    assert image.format == "PNG" and image.mode == "L" and image.size == (48, 48)
    return np.asarray(image)


def test_the_page(client):
    response = client.get("/")
    page = response.get_data(as_text=True)
    assert response.status_code == 200 and response.mimetype == "text/html"
    assert 'enctype="multipart/form-data"' in page and f'type="file" name="{server.UPLOAD_FIELD}"' in page
    assert "/api/label" in page and "tiny-test-model" in page
    assert "happy when p_happy \u2265 0.500" in page  # the decision rule, from the model's metadata
    assert 'id="result" class="card" hidden' in page and 'role="alert" hidden' in page


@pytest.mark.parametrize("bright, label", [(True, "happy"), (False, "sad")])
def test_a_face_crop_gets_its_label_and_probabilities(app, client, bright, label):
    """A face-sized image is taken whole, exactly as `preprocess_image` (and --faces none) would take it."""
    data = encode(synthetic_face(bright, seed=55), "JPEG")
    response = upload(client, "/api/label", data, "me.jpg")
    assert response.status_code == 200
    answer = response.get_json()
    assert answer["label"] == label and answer["filename"] == "me.jpg"
    assert answer["model_version"] == "tiny-test-model"
    assert list(answer["probabilities"]) == ["happy", "sad"]
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    face = preprocess_image(data)
    expected = app.extensions[server.CLASSIFIER_KEY](face[np.newaxis])[0]
    assert list(answer["probabilities"].values()) == pytest.approx(expected.tolist(), abs=1e-6)
    assert np.array_equal(decode_face(answer["face_uri"]), face[..., 0].astype(np.uint8))  # what the model saw
    [only] = answer["faces"]
    assert only["rank"] == 1 and only["score"] is None and only["box"] == [0.0, 0.0, 1.0, 1.0]
    assert only["detector"] is None


def test_a_photo_gets_every_face_with_its_box(app, client, shared_faces):
    """Two people in one photo: two boxes where they are, each with the aligned face and its own probabilities."""
    photo = scene(seed=21)
    faces = [Image.open(p) for p in shared_face_files(shared_faces, "sad", 2, start=50)]
    pasted = [paste_face(photo, faces[0], (170, 230), 180), paste_face(photo, faces[1], (470, 220), 140, 8)]
    answer = upload(client, "/api/label", encode(photo, "JPEG", quality=92), "two.jpg").get_json()
    assert [face["rank"] for face in answer["faces"]] == [1, 2]
    for face, box in zip(answer["faces"], pasted):  # largest first, and the larger one was pasted first
        assert box_overlap(box, face["pixel_box"]) >= 0.4
        assert face["box"] == pytest.approx([v / s for v, s in zip(face["pixel_box"], (640, 480, 640, 480))],
                                            abs=0.01)
        assert 0.9 <= face["score"] <= 1 and face["label"] in ("happy", "sad") and face["detector"] == "mtcnn"
        pixels = decode_face(face["face_uri"]).astype(np.float32)[np.newaxis, ..., np.newaxis]
        expected = app.extensions[server.CLASSIFIER_KEY](pixels)[0]
        assert list(face["probabilities"].values()) == pytest.approx(expected.tolist(), abs=1e-4)
    assert answer["label"] == answer["faces"][0]["label"]
    photo_shown = Image.open(io.BytesIO(base64.b64decode(answer["photo_uri"].split(",", 1)[1])))
    assert photo_shown.size == (640, 480)


def test_a_photo_without_a_face_says_so(client):
    answer = upload(client, "/api/label", encode(scene(seed=22), "JPEG"), "field.jpg").get_json()
    assert answer["label"] == "no_face" and answer["faces"] == [] and answer["probabilities"] == {}
    page = upload(client, "/", encode(scene(seed=22), "JPEG"), "field.jpg").get_data(as_text=True)
    assert "No face found in this image" in page and 'id="no-face" class="note" hidden' not in page


@pytest.mark.parametrize("data, message", [
    (b"just some text\n", "cannot label this file: not a recognised image format"),
    (b"", "cannot label this file: empty file (0 bytes)"),
])
def test_a_non_image_gets_a_clear_400(client, data, message):
    response = upload(client, "/api/label", data, "notes.txt")
    assert response.status_code == 400 and response.get_json() == {"error": message}


def test_a_request_without_a_file_gets_a_clear_400(client):
    response = client.post("/api/label", data={}, content_type="multipart/form-data")
    assert response.status_code == 400 and response.get_json() == {"error": server.NO_FILE_MESSAGE}
    assert f"field named {server.UPLOAD_FIELD!r}" in server.NO_FILE_MESSAGE  # says what an API client must send


def test_an_oversized_upload_gets_a_clear_413(client):
    response = upload(client, "/api/label", b"\0" * OVERSIZED_BYTES, "huge.png")
    assert response.status_code == 413
    assert response.get_json() == {"error": "file too large: uploads are limited to 20 MB"}
    page = upload(client, "/", b"\0" * OVERSIZED_BYTES, "huge.png")
    assert page.status_code == 413 and "file too large: uploads are limited to 20 MB" in page.get_data(as_text=True)


def test_the_plain_form_fallback(client):
    ok = upload(client, "/", encode(synthetic_face(True, seed=56)), "bright.png")
    page = ok.get_data(as_text=True)
    assert ok.status_code == 200
    assert '<p class="label">1. happy</p>' in page and f'src="{DATA_URI_PREFIX}' in page and "bright.png" in page
    assert 'id="result" class="card" hidden' not in page
    bad = upload(client, "/", b"%PDF-1.4 not a face", "doc.pdf")
    page = bad.get_data(as_text=True)
    assert bad.status_code == 400
    assert '<p id="error" role="alert" >cannot label this file: not a recognised image format</p>' in page


def test_uploads_are_kept_in_memory_only(client, monkeypatch):
    def no_disk(*_args, **_kwargs):
        raise AssertionError("an upload was spooled to disk")

    monkeypatch.setattr(formparser, "SpooledTemporaryFile", no_disk)  # Werkzeug's default for uploads
    for name in ("SpooledTemporaryFile", "TemporaryFile", "NamedTemporaryFile", "mkstemp"):
        monkeypatch.setattr(tempfile, name, no_disk)
    noise = np.random.default_rng(0).integers(0, 256, (SPOOL_SIZED_PIXELS, SPOOL_SIZED_PIXELS), dtype=np.uint8)
    data = encode(Image.fromarray(noise, mode="L"))
    assert len(data) > 1024 * 1024
    assert upload(client, "/api/label", data).status_code == 200


def test_main_refuses_a_bad_model_or_a_busy_port(tiny_model_dir, tmp_path, capsys):
    assert server.main(["--model", str(tmp_path)]) == server.EXIT_USER_ERROR
    assert capsys.readouterr().err.startswith("error: not a SavedModel")
    with socket.socket() as busy:
        busy.bind((server.DEFAULT_HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        assert server.main(["--model", str(tiny_model_dir), "--port", str(port)]) == server.EXIT_USER_ERROR
    assert f"Port {port} is in use" in capsys.readouterr().err
    for port in ("-5", "99999"):  # a traceback from the socket; a port wrapped round to 34463
        with pytest.raises(SystemExit) as stopped:
            server.main(["--model", str(tiny_model_dir), "--port", port])
        assert stopped.value.code == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --port must be 0 (any free port) to 65535, got {port}")
        assert "Traceback" not in err


def test_the_page_says_a_face_sized_image_without_a_face_found_was_taken_whole(client):
    """The page said "1 face found" where the job's row says faces_found 0 (the image taken whole)."""
    page = upload(client, "/", encode(synthetic_face(True, seed=56), "JPEG"), "me.jpg").get_data(as_text=True)
    summary = page.split('<span id="summary">', 1)[1].split("</span>", 1)[0]
    assert summary == server.WHOLE_IMAGE_SUMMARY
    assert json.dumps(server.WHOLE_IMAGE_SUMMARY) in page  # the script's text after an upload without reload


def test_a_model_trained_on_aligned_crops_sees_a_face_crop_aligned(tiny_model_dir, shared_faces, tmp_path):
    """The page serves a face-sized image as a labelling run would for the model: aligned when its metadata says
    it was trained on aligned crops (and a face is found), whole otherwise."""
    import shutil

    from model.align import aligned_face
    from model.faces import FaceFinder, decode_for_faces
    from model.metadata import ModelMetadata

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    meta = ModelMetadata.read(model_dir)
    ModelMetadata.from_json(meta.to_json().replace('"aligned_crops": false', '"aligned_crops": true')).write(model_dir)
    finder = FaceFinder()
    for path in sorted((shared_faces / "happy").iterdir()):
        image = decode_for_faces(path.read_bytes()).image
        faces = finder.find([image])[0]
        if faces:
            break
    answer = upload(server.create_app(str(model_dir)).test_client(), "/api/label", path.read_bytes(),
                    "crop.jpg").get_json()
    [only] = answer["faces"]
    aligned = aligned_face(image, faces[0])[..., 0].astype(np.uint8)
    assert only["score"] is not None and np.array_equal(decode_face(only["face_uri"]), aligned)
    assert not np.array_equal(aligned, preprocess_image(path.read_bytes())[..., 0].astype(np.uint8))
