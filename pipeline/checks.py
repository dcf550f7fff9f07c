"""The job's up-front checks, run where it is launched before anything is built: input, output, model, and the
paths a remote runner's workers can reach. Each failure is a UserError, shown as one line without a traceback.
"""

import argparse
import logging
import os
import uuid

from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from model.blazeface import BlazeFace, FaceDetectorUnavailable
from model.contract import DEFAULT_MODEL_DIR
from model.lite import PRECISION_FLOAT32, PRECISION_INT8, check_int8_model
from model.mirror import served_metadata
from pipeline.inputs import InputError, InputSpec, Survey, check_input, input_warnings, resolve_input
from pipeline.model_files import check_reachable, is_local, localize_model, root_cause
from pipeline.outputs import IncompleteOutputError, output_files
from pipeline.previous import earlier_model_version, first_records, previous_summary, unusable_reason

# Prefix of the file written and deleted to prove the output folder writable; each run's probe has its own name
# (process id and a random part): two runs started together into one folder deleted each other's probe, and the
# loser was told "not writable" instead of "another run" by the output lock.
WRITE_CHECK_FILE: str = ".facelabel-write-check"
# Runners whose workers run on other machines, so they cannot read this machine's files (matched in lower case).
REMOTE_RUNNER_MARKERS: tuple[str, ...] = ("dataflow",)

log = logging.getLogger("facelabel")


class UserError(Exception):
    """A mistake in how the job was called; its message is shown as one line, without a traceback."""


def check_input_path(input_path: str) -> tuple[InputSpec, Survey]:
    """What --input names (pipeline.inputs) and what listing it found; one error line if it cannot be used."""
    try:
        source = resolve_input(input_path)
        survey = check_input(source)
    except InputError as err:
        raise UserError(str(err)) from None
    for warning in input_warnings(source, survey):
        log.warning("%s", warning)
    return source, survey


def check_face_finder() -> None:
    """Raises UserError (one line) when the second face detector's model file is not installed here or does not
    load: every worker would fail on it (it is installed with requirements.txt)."""
    try:
        BlazeFace()
    except FaceDetectorUnavailable as err:
        raise UserError(str(err)) from None


def check_output(output_dir: str) -> None:
    """Make sure the output folder can be written before spending time on the run."""
    if is_local(output_dir) and os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise UserError(f"output is a file, not a folder: {output_dir}")
    probe = FileSystems.join(output_dir, f"{WRITE_CHECK_FILE}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        check_reachable(output_dir)  # a missing bucket fails here, clearly, before any upload is attempted
    except FileNotFoundError as err:
        raise UserError(f"output folder is not writable: {err}") from None
    try:
        if is_local(output_dir):
            os.makedirs(output_dir, exist_ok=True)
        with FileSystems.create(probe) as handle:
            handle.write(b"ok")
        FileSystems.delete([probe])
    except Exception as err:
        raise UserError(f"output folder is not writable: {output_dir} ({root_cause(err)})") from None


def check_previous_labels(labels_path: str, class_names: tuple[str, ...], faces_mode: str,
                          model_version: str, input_path: str | None = None,
                          aligned_crops: bool = False) -> str | None:
    """--incremental reads the earlier labels: labels_path if their rows can be carried over, else None.

    A damaged shard set is one clear line now (UserError), not a failed job later; earlier labels that cannot be
    carried over (other columns, another --faces mode, another framing of face crops: `aligned_crops`, the
    model's) are one warning line, since then every image is labelled
    again; so is, as information, a change of model (or of --precision)."""
    try:
        files = output_files(labels_path)
    except IncompleteOutputError as err:
        raise UserError(f"cannot run --incremental: {err}; remove or restore the output's labels files") from None
    if not files:
        log.info("--incremental: no earlier labels in %s: every image is labelled", labels_path.rsplit("/", 1)[0])
        return None
    records, summary = first_records(files[0]), previous_summary(labels_path)
    reason = unusable_reason(labels_path, records, summary, class_names, faces_mode, aligned_crops)
    if reason:
        log.warning("--incremental: earlier labels not used, every image is labelled again: %s", reason)
        return None
    earlier_input = summary.get("input")
    if input_path is not None and isinstance(earlier_input, str) and earlier_input != input_path:
        log.warning("--incremental: the earlier labels are of --input %s, this run's is %s: images are matched by "
                    "the path written in labels.csv, so any whose path is spelled differently now are labelled again "
                    "and their earlier rows dropped", earlier_input, input_path)
    earlier = earlier_model_version(records)
    if earlier and earlier != model_version:
        log.info("--incremental: the earlier labels are by model %s, this run's is %s: every image is labelled "
                 "again", earlier, model_version)
    return labels_path


def is_remote_runner(options: PipelineOptions) -> bool:
    """True for runners whose workers run on other machines (and cannot see this one's files)."""
    runner = str(options.view_as(StandardOptions).runner or "").lower()
    return any(marker in runner for marker in REMOTE_RUNNER_MARKERS)


def is_default_model(model_uri: str) -> bool:
    return is_local(model_uri) and os.path.abspath(model_uri) == str(DEFAULT_MODEL_DIR)


def check_runner_paths(args: argparse.Namespace, options: PipelineOptions) -> None:
    """Workers of a remote runner cannot see this machine's disk: input, output and model must be remote.

    The shipped default model is the exception: it is part of the package every worker installs.
    """
    if not is_remote_runner(options):
        return
    runner = options.view_as(StandardOptions).runner
    for flag, path in (("--input", args.input), ("--output", args.output), ("--model", args.model)):
        if is_local(path) and not (flag == "--model" and is_default_model(path)):
            raise UserError(f"{flag} {path} is on this machine; {runner} workers need a gs:// path")


def check_model(model_uri: str, precision: str = PRECISION_FLOAT32, mirror_average: bool = False):
    """Check the model's metadata and serving signature here (without loading it: the workers load it, once
    per process), so a wrong path or shape fails now rather than on every worker; with precision int8, that
    it has an int8 copy. Returns the metadata of the model as served (an int8 copy's version ends in +int8, one
    served with mirror averaging in +mirror: model.mirror)."""
    from model.saved import ModelLoadError, check_classifier  # TensorFlow: imported only once it is needed
    try:
        local = localize_model(model_uri)
        metadata = check_classifier(local)
        if precision == PRECISION_INT8:
            metadata = check_int8_model(local, model_uri)
        return served_metadata(metadata, mirror_average)
    except (ModelLoadError, FileNotFoundError) as err:
        raise UserError(str(err)) from None
    except Exception as err:
        raise UserError(f"cannot read model {model_uri} ({root_cause(err)})") from None
