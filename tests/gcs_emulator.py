"""A real Google Cloud Storage JSON API on 127.0.0.1 for the gs:// tests, so they run offline.

gcp-storage-emulator serves it from memory, in a thread of the test process. Beam's GCS file system builds a
google-cloud-storage client, and that client sends every request to STORAGE_EMULATOR_HOST when it is set.
Beam asks for Google's default credentials before building the client; the fixture pins Beam's answer to
"none", which makes Beam use an anonymous client: no credential lookup, no metadata server, nothing leaves
the machine. Everything is undone when the module's tests are done.
"""

import dataclasses
import logging
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from apache_beam.internal.gcp import auth as beam_auth
from gcp_storage_emulator.server import create_server
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage

HOST: str = "127.0.0.1"
BUCKET: str = "facelabel-test"
PROJECT: str = "facelabel-test-project"
MISSING_BUCKET: str = "facelabel-no-such-bucket"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


@dataclasses.dataclass
class Bucket:
    """The test bucket, with the few helpers tests need to put files in and read results back."""

    name: str
    handle: storage.Bucket

    def uri(self, path: str = "") -> str:
        return f"gs://{self.name}/{path}"

    def upload(self, path: str, data: bytes) -> str:
        self.handle.blob(path).upload_from_string(data)
        return self.uri(path)

    def upload_dir(self, local_dir: Path, prefix: str) -> str:
        """Upload every file under local_dir to gs://bucket/prefix/..., keeping relative paths."""
        for path in sorted(p for p in Path(local_dir).rglob("*") if p.is_file()):
            self.upload(f"{prefix.rstrip('/')}/{path.relative_to(local_dir).as_posix()}", path.read_bytes())
        return self.uri(prefix.rstrip("/"))

    def read(self, path: str) -> bytes:
        return self.handle.blob(path).download_as_bytes()

    def list(self, prefix: str) -> list[str]:
        return sorted(blob.name for blob in self.handle.list_blobs(prefix=prefix))


@pytest.fixture(scope="module")
def gcs() -> Iterator[Bucket]:
    """An empty bucket on a fresh in-memory emulator, with gs:// routed to it for the module's tests."""
    port = free_port()
    logging.getLogger("gcp_storage_emulator").setLevel(logging.ERROR)  # it logs every request
    server = create_server(HOST, port, in_memory=True)
    server.start()
    try:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("STORAGE_EMULATOR_HOST", f"http://{HOST}:{port}")
            patch.setenv("GOOGLE_CLOUD_PROJECT", PROJECT)
            patch.setenv("NO_GCE_CHECK", "True")  # a process that still asks google.auth skips the metadata probe
            patch.setattr(beam_auth._Credentials, "_credentials_init", True)
            patch.setattr(beam_auth._Credentials, "_credentials", None)
            client = storage.Client(project=PROJECT, credentials=AnonymousCredentials())
            yield Bucket(BUCKET, client.create_bucket(BUCKET))
    finally:
        server.stop()
