"""Dataflow readiness, offline: what workers install, the job Dataflow would get, and multi-process running.

Submitting a job needs a Google Cloud project; everything up to the submission is checked here: the package
built from setup.py (code, shipped model, pinned requirements), the Dataflow job built by the real
DataflowRunner with the Makefile's flags (`--dry_run=True` stops just before the API call), and a run
with several worker processes, as Dataflow workers are.
"""

import email
import shlex
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from apache_beam.internal import pickler
from apache_beam.portability.api import beam_runner_api_pb2
from apache_beam.transforms.combiners import CountCombineFn
from apache_beam.runners.dataflow.dataflow_runner import DataflowRunner
from packaging.requirements import Requirement

from conftest import PROJECT_ROOT, encode, synthetic_face
from model.contract import DEFAULT_MODEL_DIR
from pipeline import model_handler
from pipeline import run as job

PACKAGES = ("pipeline", "model", "trainer")
# What the tree needs to build the package (setup.py reads the requirements files; MANIFEST.in adds the model;
# setuptools warns without a README).
PACKAGING_FILES = ("setup.py", "MANIFEST.in", "README.md", "requirements.txt", "requirements-test.txt")
DEFAULT_MODEL = Path("model") / "default"
MODEL_FILES = ("saved_model.pb", "facelabel.json", "variables/variables.index")
JOB_STEPS = ("ReadImages/MatchFiles", "LabelImages/Decode", "LabelImages/FindFaces", "LabelImages/AlignFaces",
             "LabelImages/Classify", "WriteOutputs/WriteLabels", "WriteOutputs/WriteErrors",
             "WriteOutputs/WriteSummary")


def pinned(requirements: list[str]) -> set[str]:
    """Requirements compared by meaning (name normalised, extras, specifier), not by spelling."""
    parsed = [Requirement(line) for line in requirements]
    return {f"{r.name.lower().replace('_', '-')}{sorted(r.extras)}{r.specifier}" for r in parsed if not r.marker}


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory, tiny_model_dir) -> Path:
    """The packaging-relevant part of the project in a temp folder, so building leaves the checkout untouched.

    The shipped model may not exist yet (it is trained by `make train`); the tiny model stands in for it.
    """
    root = tmp_path_factory.mktemp("project")
    for name in PACKAGING_FILES:
        shutil.copy(PROJECT_ROOT / name, root / name)
    for package in PACKAGES:
        shutil.copytree(PROJECT_ROOT / package, root / package, ignore=shutil.ignore_patterns("__pycache__"))
    if not (root / DEFAULT_MODEL / "saved_model.pb").is_file():
        shutil.rmtree(root / DEFAULT_MODEL, ignore_errors=True)
        shutil.copytree(tiny_model_dir, root / DEFAULT_MODEL)
    return root


def build(args: list[str], cwd: Path) -> None:
    subprocess.run([sys.executable, *args], cwd=cwd, check=True, capture_output=True)


def test_package_ships_code_default_model_and_pinned_requirements(project_copy, tmp_path):
    """What a Dataflow worker installs (`--setup_file`): the sdist Beam stages, then the wheel pip builds from it."""
    build(["setup.py", "-q", "sdist", "-d", str(tmp_path)], project_copy)
    (sdist,) = tmp_path.glob("facelabel-*.tar.gz")
    with tarfile.open(sdist) as archive:
        in_sdist = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    build(["-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(sdist)],
          tmp_path)
    (wheel,) = tmp_path.glob("facelabel-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        in_wheel = set(archive.namelist())
        (metadata_name,) = [n for n in in_wheel if n.endswith(".dist-info/METADATA")]
        metadata = email.message_from_bytes(archive.read(metadata_name))

    for files in (in_sdist, in_wheel):
        for package in PACKAGES:
            assert f"{package}/__init__.py" in files
        assert {"pipeline/run.py", "trainer/task.py", "model/preprocess.py"} <= files
        assert {(DEFAULT_MODEL / name).as_posix() for name in MODEL_FILES} <= files
        assert any(name.startswith("model/default/variables/variables.data-") for name in files)
    requirements = (PROJECT_ROOT / "requirements.txt").read_text().splitlines()
    requirements = [line.strip() for line in requirements if line.strip() and not line.lstrip().startswith("#")]
    assert pinned(metadata.get_all("Requires-Dist")) == pinned(requirements)


@pytest.fixture(scope="module")
def dataflow_flags() -> list[str]:
    """DATAFLOW_FLAGS exactly as `make dataflow` passes them."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    printed = subprocess.run(["make", "-s", "-C", str(PROJECT_ROOT), "print-dataflow-flags"], check=True,
                             capture_output=True, text=True).stdout
    return shlex.split(printed)


@pytest.fixture
def built_jobs(monkeypatch) -> list:
    """Every Dataflow job (apiclient.Job) the DataflowRunner builds during the test."""
    jobs = []
    run_pipeline = DataflowRunner.run_pipeline

    def keep_job(self, *args, **kwargs):
        result = run_pipeline(self, *args, **kwargs)
        jobs.append(result.job)
        return result

    monkeypatch.setattr(DataflowRunner, "run_pipeline", keep_job)
    return jobs


def staged_files(job) -> set[str]:
    """Names of the files the job would stage for its workers (the package built from setup.py among them)."""
    return {beam_runner_api_pb2.ArtifactStagingToRolePayload.FromString(dependency.role_payload).staged_name
            for environment in job.proto_pipeline.components.environments.values()
            for dependency in environment.dependencies}


def test_dataflow_job_is_built_with_the_makefile_flags(gcs, tiny_model_dir, project_copy, dataflow_flags,
                                                       built_jobs, monkeypatch, capsys):
    """The real DataflowRunner builds the job (graph, staged package) from gs:// paths; nothing is submitted."""
    gcs.upload("dataflow/in/face.png", encode(synthetic_face(True, seed=1)))
    model_uri = gcs.upload_dir(tiny_model_dir, "dataflow/model")
    monkeypatch.chdir(project_copy)  # --setup_file=./setup.py, as in the Makefile, builds the copy
    status = job.main(["--input", gcs.uri("dataflow/in"), "--output", gcs.uri("dataflow/out"),
                       "--model", model_uri, "--runner=DataflowRunner", "--dry_run=True", "--no_auth",
                       "--project=facelabel-project", "--region=us-central1", f"--temp_location={gcs.uri('tmp')}",
                       *dataflow_flags])
    assert status == 0
    assert "built (dry run), not submitted" in capsys.readouterr().out
    assert gcs.list("dataflow/out/") == [] and gcs.list("tmp/") == []  # built, not run, nothing uploaded

    (built,) = built_jobs
    transforms = {t.unique_name for t in built.proto_pipeline.components.transforms.values()}
    assert set(JOB_STEPS) <= transforms, sorted(transforms)
    assert "workflow.tar.gz" in staged_files(built)  # the sdist of setup.py, installed on every worker
    options = built.options.get_all_options()
    for flag in (f for f in dataflow_flags if "=" in f):
        name, value = flag.removeprefix("--").split("=", 1)
        assert value in str(options[name]), (flag, options[name])
    assert_no_combine_gathers_rows(built.proto_pipeline)


# The only combine the job may have: counting (a number per bundle, merged). A list, sample or sort combine
# (ToList, Sample, a gather to sort) would bring all its input onto one worker.
ALLOWED_COMBINE_FNS = (CountCombineFn,)
COMBINE_URNS = {"beam:transform:combine_globally:v1", "beam:transform:combine_per_key:v1",
                "beam:transform:combine_grouped_values:v1"}


def assert_no_combine_gathers_rows(proto) -> None:
    """Every combine in the job graph is a count, and the rows reach the output files without a combine:
    labels and errors are written by the distributed sort (pipeline.sorted_files)."""
    components = proto.components
    combines = {t.unique_name: t for t in components.transforms.values() if t.spec.urn in COMBINE_URNS}
    assert combines, "expected the summary's counts as combines"
    for name, transform in combines.items():
        payload = beam_runner_api_pb2.CombinePayload.FromString(transform.spec.payload)
        combine_fn = pickler.loads(payload.combine_fn.payload)
        assert isinstance(combine_fn, ALLOWED_COMBINE_FNS), f"{name} combines with {type(combine_fn).__name__}"
    names = {t.unique_name for t in components.transforms.values()}
    for output in ("WriteLabels", "WriteErrors"):
        assert {f"WriteOutputs/{output}/{step}" for step in ("SpillRuns", "PlanShards", "WriteShard")} <= names


def test_local_paths_are_refused_for_dataflow(tiny_model_dir, tmp_path, capsys):
    synthetic_face(True, seed=1).save(tmp_path / "face.png")
    status = job.main(["--input", str(tmp_path), "--output", "gs://bucket/out", "--model", str(tiny_model_dir),
                       "--runner=DataflowRunner", "--project=facelabel-project", "--region=us-central1"])
    assert status == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: --input {tmp_path} is on this machine") and "\n" not in err, err


def test_workers_load_the_shipped_model_from_their_own_install(tiny_model_dir, monkeypatch):
    """The default model reaches workers as None (their installed copy), not as this machine's path."""
    monkeypatch.chdir(PROJECT_ROOT)
    assert job.is_default_model("model/default") and job.is_default_model(str(DEFAULT_MODEL_DIR))
    assert not job.is_default_model(str(tiny_model_dir)) and not job.is_default_model("gs://b/model/default")
    monkeypatch.setattr(model_handler, "DEFAULT_MODEL_DIR", tiny_model_dir)
    assert model_handler.ClassifierHandler(None).load_model().metadata.model_version == "tiny-test-model"


def test_multi_process_run_writes_the_same_labels(tiny_model_dir, tmp_path):
    """Several worker processes (as on Dataflow) give byte-identical outputs to the in-process run."""
    folder = tmp_path / "in"
    (folder / "nested").mkdir(parents=True)
    for i in range(12):
        synthetic_face(i % 2 == 0, seed=300 + i).save(folder / ("nested" if i % 3 else ".") / f"face_{i}.png")
    (folder / "broken.png").write_bytes(b"not an image")
    outputs = {}
    for mode, flags in (("in_process", []),
                        ("multi_processing", ["--direct_running_mode=multi_processing", "--direct_num_workers=2"])):
        summary = job.run(["--input", str(folder), "--output", str(tmp_path / mode), "--model", str(tiny_model_dir),
                           *flags])
        assert summary["images_labelled"] == 12 and summary["images_failed"] == 1
        outputs[mode] = [(tmp_path / mode / name).read_bytes() for name in ("labels.csv", "errors.csv")]
    assert outputs["multi_processing"] == outputs["in_process"]
