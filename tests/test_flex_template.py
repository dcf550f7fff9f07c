"""The Flex Template, offline: metadata.json against pipeline.run's parser, the Dockerfile's references, and the
entry point running the job (DirectRunner to the end; DataflowRunner up to the submission, as in test_dataflow).
Docker and Google Cloud cannot be reached here, so the image itself is not built."""

import datetime
import json
import re
import subprocess
import sys

from conftest import PROJECT_ROOT, encode, synthetic_face
from pipeline.flex_template import main as entry
from pipeline.flex_template.metadata import LEFT_OUT, METADATA_FILE, TEMPLATE_PARAMETERS, template_metadata
from pipeline.flags import build_parser
from test_dataflow import built_jobs, project_copy  # noqa: F401  (fixtures)

TEMPLATE_DIR = PROJECT_ROOT / "pipeline" / "flex_template"
LAUNCHER_IMAGE = "gcr.io/dataflow-templates-base/python311-template-launcher-base"


def test_metadata_is_the_one_derived_from_the_parser():
    assert json.loads(METADATA_FILE.read_text()) == template_metadata(), "run: make flex-metadata"


def test_every_job_flag_is_a_parameter_or_left_out_with_a_reason():
    actions = {action.dest: action for action in build_parser()._actions}
    assert set(actions) == set(TEMPLATE_PARAMETERS) | set(LEFT_OUT), "decide for each new flag of pipeline.run"
    assert not set(TEMPLATE_PARAMETERS) & set(LEFT_OUT)
    for parameter in json.loads(METADATA_FILE.read_text())["parameters"]:
        action = actions[parameter["name"]]
        assert f"--{parameter['name']}" in action.option_strings  # the launcher passes --name=value
        assert parameter["isOptional"] == (not action.required)
        assert parameter["label"] and parameter["helpText"]


def dockerfile() -> tuple[str, dict[str, str], list[list[str]]]:
    """(FROM image, ENV values with ${WORKDIR} resolved, COPY argument lists) of the template's Dockerfile."""
    lines = (TEMPLATE_DIR / "Dockerfile").read_text().splitlines()
    instructions = [line.split(None, 1) for line in lines if line.strip() and not line.startswith("#")]
    workdir = next(value.split("=", 1)[1] for key, value in instructions
                   if key == "ARG" and value.startswith("WORKDIR="))
    env = {}
    for key, value in instructions:
        if key == "ENV":
            name, quoted = value.split("=", 1)
            env[name] = quoted.strip('"').replace("${WORKDIR}", workdir)
    image = next(value for key, value in instructions if key == "FROM")
    return image, {**env, "WORKDIR": workdir}, [value.split() for key, value in instructions if key == "COPY"]


def test_dockerfile_uses_the_launcher_image_and_points_at_files_it_copies():
    image, env, copies = dockerfile()
    assert image == LAUNCHER_IMAGE
    copied = {source.rstrip("/") for args in copies for source in args[:-1]}
    assert all((PROJECT_ROOT / source).exists() for source in copied), copied
    for variable, expected in (("FLEX_TEMPLATE_PYTHON_PY_FILE", "pipeline/flex_template/main.py"),
                               ("FLEX_TEMPLATE_PYTHON_SETUP_FILE", "setup.py")):
        relative = env[variable].removeprefix(env["WORKDIR"] + "/")
        assert relative == expected and (PROJECT_ROOT / relative).is_file()
        assert relative in copied or relative.split("/")[0] in copied
    assert {"requirements.txt", "setup.py"} <= copied  # setup.py reads the pins


def test_entry_point_runs_the_job_without_waiting(tiny_model_dir, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(4):
        synthetic_face(i % 2 == 0, seed=i).save(folder / f"face_{i}.png")
    # As a Cloud Scheduler request launches it: a fixed output with the date placeholder, a dated folder results.
    assert entry.launch([f"--input={folder}", f"--output={tmp_path}/labels-{{date}}", f"--model={tiny_model_dir}"]) == 0
    out = tmp_path / f"labels-{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d}"
    assert json.loads((out / "summary.json").read_text())["images_labelled"] == 4  # written straight into --output
    assert len((out / "labels.csv").read_text().splitlines()) == 5
    assert sorted(p.name for p in out.iterdir()) == ["errors.csv", "labels.csv", "summary.json"]  # no sort leftovers


def test_entry_point_file_runs_as_the_launcher_runs_it(tmp_path):
    """`python .../main.py ARGS`, from another folder: a mistake is one line and status 2."""
    done = subprocess.run([sys.executable, str(TEMPLATE_DIR / "main.py"), f"--input={tmp_path / 'missing'}",
                           f"--output={tmp_path / 'out'}"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 2
    assert re.fullmatch(r"error: input not found or matches no files: \S+\n", done.stderr.splitlines(True)[-1])


def test_entry_point_builds_the_dataflow_job(gcs, tiny_model_dir, project_copy, built_jobs,  # noqa: F811
                                             monkeypatch, capsys):
    """With the options the launcher passes (setup file from FLEX_TEMPLATE_PYTHON_SETUP_FILE), the Dataflow job
    is built and, as a dry run, not submitted."""
    gcs.upload("flex/in/face.png", encode(synthetic_face(True, seed=1)))
    model_uri = gcs.upload_dir(tiny_model_dir, "flex/model")
    monkeypatch.chdir(project_copy)
    status = entry.launch([f"--input={gcs.uri('flex/in')}", f"--output={gcs.uri('flex/out')}", f"--model={model_uri}",
                           "--runner=DataflowRunner", "--project=facelabel-project", "--region=us-central1",
                           f"--temp_location={gcs.uri('tmp')}", f"--setup_file={project_copy / 'setup.py'}",
                           "--dry_run=True", "--no_auth"])
    assert status == 0
    assert "built (dry run), not submitted" in capsys.readouterr().out
    (built,) = built_jobs
    assert built.options.get_all_options()["no_wait_until_finish"] is True
