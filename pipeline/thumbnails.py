"""Thumbnails for the run report: each picked image read once (concurrently), shown as the model saw it.

A found face is found and aligned again with the job's own code (`model.faces`, `model.align`), a whole-image face
(a run with --faces none) preprocessed as the job did, and an image without a face shown whole and small.
"""

from concurrent.futures import ThreadPoolExecutor

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from model.faces import FaceFinder
from model.preprocess import ImageDecodeError
from pipeline.face_images import aligned_face_data_uri, face_data_uri, photo_data_uri
from pipeline.listing import source_path
from pipeline.model_files import root_cause

# Image files larger than this get a placeholder instead of a thumbnail; a face crop is far smaller.
MAX_THUMBNAIL_SOURCE_BYTES: int = 32 * 1024 * 1024
# Thumbnails are read concurrently: on gs:// each one is a network round trip.
THUMBNAIL_READERS: int = 8
# (path, face rank or None for the whole image, True for an image without a face: shown whole)
ThumbnailKey = tuple[str, int | None, bool]


def read_source(path: str) -> tuple[bytes | None, str | None]:
    """(the image file's bytes, None), or (None, why not) for a missing, unreadable or oversized file.

    path as the outputs write it (see `pipeline.listing.source_path` for names that are not valid UTF-8)."""
    try:
        with FileSystems.open(source_path(path), compression_type=CompressionTypes.UNCOMPRESSED) as handle:
            data = handle.read(MAX_THUMBNAIL_SOURCE_BYTES + 1)
    except Exception as err:  # missing, moved, no permission...: the tile says so, the report goes on
        return None, root_cause(err)
    if len(data) > MAX_THUMBNAIL_SOURCE_BYTES:
        return None, f"file over {MAX_THUMBNAIL_SOURCE_BYTES:,} bytes"
    return data, None


class Thumbnails:
    """Thumbnails of picked rows: the face as the model saw it (found and aligned again with the job's own code,
    or the whole image for a run without face finding) or, for an image without a face, the whole image.

    Files are read concurrently (on gs:// each is a network round trip); the face finder is built only if a
    picked row has a found face."""

    def __init__(self, aligned_crops: bool = False) -> None:
        self._finder: FaceFinder | None = None
        self._aligned_crops = aligned_crops  # the run's model's ModelMetadata.aligned_crops

    def _face_finder(self) -> FaceFinder:
        if self._finder is None:
            self._finder = FaceFinder()
        return self._finder

    def make(self, wanted: list[ThumbnailKey]) -> dict[ThumbnailKey, tuple[str | None, str | None]]:
        """{(path, face rank or None, whole photo?): (data: URI, None) or (None, why there is none)}."""
        keys = list(dict.fromkeys(wanted))
        paths = list(dict.fromkeys(path for path, _, _ in keys))
        with ThreadPoolExecutor(THUMBNAIL_READERS) as pool:
            sources = dict(zip(paths, pool.map(read_source, paths)))
        return {key: self._render(sources[key[0]], key[1], key[2]) for key in keys}

    def _render(self, source: tuple[bytes | None, str | None], face: int | None,
                whole_photo: bool) -> tuple[str | None, str | None]:
        data, problem = source
        if data is None:
            return None, problem
        try:
            if whole_photo:
                return photo_data_uri(data), None
            if face is None:
                return face_data_uri(data), None
            return aligned_face_data_uri(data, face, self._face_finder(), self._aligned_crops), None
        except ImageDecodeError as err:
            return None, str(err)
