"""Label the faces in a folder of images as happy or sad with Apache Beam.

Workflow:
1. Check the user's input, output and model before anything is launched (pipeline.checks: one clear line on a
   mistake).
2. ReadImages: list the input (pipeline.inputs: an existing folder is walked, an existing file is one file,
   anything else is a shell-like glob) and read the files' bytes.
3. LabelImages, two models in a row (Beam's cascade pattern): Decode -> FindFaces (RunInference with the face
   detector) -> AlignFaces (`model.align`) -> Classify (RunInference with the SavedModel, or its int8 copy with
   --precision int8; each face averaged with its mirror image where faces are found; batched, keyed by path
   and face) -> rows; an image without a face becomes a `no_face` row. With --faces none: Preprocess (the
   whole image) -> Classify.
4. WriteOutputs: labels.csv, errors.csv and summary.json in the output folder.

Only the job's own flags are declared (pipeline.flags); every other flag goes to Beam's PipelineOptions, so the same
command runs on the DirectRunner or, with `--runner=DataflowRunner --project=... --region=...`, on Dataflow.
With `--dry_run=True` (Dataflow) or `--no_wait_until_finish`, the job is built (and submitted unless a dry
run) and run() returns the launch details instead of the summary.

    python -m pipeline.run --input ../shared/data/fer2013/train --output /tmp/labels
"""

import argparse
import datetime
import json
import logging
import os
import shutil
import sys
import time

from pipeline import stopping  # signals only: loaded before the slow imports below

if __name__ == "__main__":  # a stop during the imports below is one line too
    stopping.install_during_start_up()

# First: TensorFlow starts here with its C++ start-up noise filtered (see model/console.py).
from model import console  # isort: skip  # noqa: E402

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import (DirectOptions, PipelineOptions, SetupOptions, StandardOptions,
                                                  TestOptions)
from apache_beam.runners.runner import PipelineResult

from model.align import FACE_ALIGNMENT, FACE_ALIGNMENT_BEFORE
from model.faces import FACE_FINDER
from model.metadata import ModelMetadata
from model.mirror import MIRROR_OFF, answers_averaged, mirror_wanted, network_averages_mirror
from model.preprocess import GREY_RANGE
from pipeline.checks import (UserError, check_face_finder, check_input_path, check_model, check_output,
                             check_previous_labels, check_runner_paths, is_default_model, is_remote_runner)
from pipeline.flags import DATE_PLACEHOLDER, EXIT_TOO_MANY_ERRORS, parse_args
from pipeline.inputs import InputSpec, skipped_counts
from pipeline.model_files import remove_local_copies
from pipeline.outputs import LABELS_FILE, SUMMARY_FILE, output_names, promote_outputs, remove_quietly
from pipeline.rows import FACES_NONE
from pipeline.staging import claim_output, clear_abandoned_staging, release_output, staging_folder
from pipeline.summary import format_summary, too_many_errors

DATE_FORMAT: str = "%Y-%m-%d"
EXIT_USER_ERROR: int = 2

log = logging.getLogger("facelabel")


def dated(output: str, now: datetime.datetime | None = None) -> str:
    """output with DATE_PLACEHOLDER replaced by the UTC date of `now` (default: the launch), as YYYY-MM-DD."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return output.replace(DATE_PLACEHOLDER, now.strftime(DATE_FORMAT))


def inference_threads(args: argparse.Namespace, options: PipelineOptions) -> int:
    """TensorFlow threads per worker process, so that the worker processes on one machine share its cores."""
    if args.inference_threads is not None:
        return max(args.inference_threads, 0)
    if is_remote_runner(options):
        return 1
    direct = options.view_as(DirectOptions)
    cores = os.cpu_count() or 1
    workers = direct.direct_num_workers or cores  # Beam reads 0 as "one worker per core"
    if direct.direct_running_mode == "multi_processing" and workers > 1:
        return max(1, cores // workers)
    return 0


def build_pipeline(pipeline: beam.Pipeline, args: argparse.Namespace, write_dir: str, metadata: ModelMetadata,
                   previous: str | None, info: dict) -> None:
    """files -> ReadImages -> LabelImages -> WriteOutputs, with the served model's metadata; previous: earlier
    labels whose unchanged rows are carried over (--incremental, when check_previous_labels found them usable)."""
    class_names = metadata.class_names
    from pipeline.transforms import LabelImages, ReadImages, WriteOutputs  # the model handlers: TensorFlow
    read = pipeline | "ReadImages" >> ReadImages(InputSpec(args.input, info["input_kind"]), previous, metadata,
                                                 args.faces)
    # Workers load the shipped default model from their own installed package (None), other models by path.
    worker_model = None if is_default_model(args.model) else args.model
    labelled = read["images"] | "LabelImages" >> LabelImages(
        worker_model, args.min_batch_size, args.max_batch_size, inference_threads(args, pipeline.options),
        args.faces, info["model_version"], len(class_names), args.precision, metadata.aligned_crops,
        mirror_wanted(args.mirror_average, args.faces != FACES_NONE))
    labels = (labelled["labels"], read["carried"]) | "AllLabels" >> beam.Flatten()
    errors = (read["errors"], labelled["errors"]) | "AllErrors" >> beam.Flatten()
    _ = {"matched": read["matched"], "labels": labels, "errors": errors, "carried": read["carried"]} | \
        "WriteOutputs" >> WriteOutputs(write_dir, class_names, info)


def run(argv: list[str] | None = None, save_main_session: bool = True) -> dict:
    """Check the arguments, run the pipeline to completion, and return the run's summary.

    Without waiting (a dry run or --no_wait_until_finish), return the launch details instead: the summary
    does not exist yet.
    """
    args, pipeline_args = parse_args(argv)
    args.output = dated(args.output)
    options = PipelineOptions(pipeline_args)
    options.view_as(SetupOptions).save_main_session = save_main_session
    workers = options.view_as(DirectOptions).direct_num_workers
    if workers is not None and workers < 0:
        raise UserError(f"--direct_num_workers must be 0 (one per core) or more, got {workers}")
    check_runner_paths(args, options)  # before Beam looks for a remote runner's credentials (a minute offline)
    try:
        # Created first: Beam validates the options here (e.g. Dataflow's project and temp_location), and from
        # here on the checks below reach gs:// with the job's own options (project, credentials).
        pipeline = beam.Pipeline(options=options)
    except ValueError as err:
        raise UserError(str(err)) from None
    dry_run = bool(options.view_as(TestOptions).dry_run)
    waits = not (dry_run or options.view_as(StandardOptions).no_wait_until_finish)
    try:
        source, survey = check_input_path(args.input)
        mirror = mirror_wanted(args.mirror_average, args.faces != FACES_NONE)
        metadata = check_model(args.model, args.precision, mirror)
        check_output(args.output)
        if args.faces != FACES_NONE:
            check_face_finder()
        if args.mirror_average == MIRROR_OFF and network_averages_mirror(metadata):
            log.warning("model %s averages each face with its mirror image inside its network: --mirror-average "
                        "off cannot turn that off", metadata.model_version)
        learned_alignment = metadata.training_config.get("face_alignment", FACE_ALIGNMENT_BEFORE)
        if args.faces != FACES_NONE and metadata.aligned_crops and learned_alignment != FACE_ALIGNMENT:
            log.warning("model %s learned face crops aligned as %s; faces are now aligned as %s, so its face crops "
                        "differ from what it learned: train it again with --align-crops",
                        metadata.model_version, learned_alignment, FACE_ALIGNMENT)
        if args.faces == FACES_NONE and metadata.aligned_crops:
            log.warning("--faces none takes every image whole, but model %s learned face crops found and aligned "
                        "(aligned_crops): the default --faces largest feeds it what it learned",
                        metadata.model_version)
        previous = check_previous_labels(FileSystems.join(args.output, LABELS_FILE), metadata.class_names,
                                         args.faces, metadata.model_version, args.input,
                                         metadata.aligned_crops) if args.incremental else None
        lock = claim_output(args.output) if waits else None  # nobody else writes this output folder meanwhile
    except UserError:
        shutil.rmtree(pipeline.local_tempdir, ignore_errors=True)  # Beam's own folder, removed when a pipeline runs
        raise

    started = time.time()
    info = {
        "input": args.input,
        "input_kind": source.kind,
        "files_skipped": skipped_counts(survey),
        "output": args.output,
        "model": args.model,
        "model_version": metadata.model_version,
        "aligned_crops": metadata.aligned_crops,
        "max_error_rate": args.max_error_rate,
        "incremental": args.incremental,
        "faces": args.faces,
        "face_finder": FACE_FINDER if args.faces != FACES_NONE else None,
        "face_alignment": FACE_ALIGNMENT if args.faces != FACES_NONE else None,
        "grey_range": GREY_RANGE,  # every network input stretched to the full grey range (model.preprocess)
        "precision": args.precision,
        "mirror_average": answers_averaged(metadata),  # by serving (+mirror) or inside the network
        "started_at": datetime.datetime.fromtimestamp(started, datetime.timezone.utc).isoformat(timespec="seconds"),
        "started_unix": started,
    }
    log.info("labelling %s with model %s into %s", args.input, metadata.model_version, args.output)
    if not waits:
        # Nobody waits to move staged files into place: the job writes straight into the output folder.
        with pipeline:
            build_pipeline(pipeline, args, args.output, metadata, previous, info)
        return launch_details(pipeline.result, dry_run, info)
    staging = staging_folder(args.output, started)
    try:
        clear_abandoned_staging(args.output)
        with pipeline:
            build_pipeline(pipeline, args, staging, metadata, previous, info)
        with stopping.held_until_done():
            promote_outputs(staging, args.output)
            stopping.outputs_in_place.append(True)
    finally:
        with stopping.held_until_done():  # a stop here would leave the staging folder
            remove_quietly(staging)
            release_output(lock)
    if args.report:
        from pipeline.report import report_after_run
        report_after_run(args.output)
    return read_summary(args.output)


def launch_details(result: PipelineResult, dry_run: bool, info: dict) -> dict:
    """What was launched: the Dataflow job's name (dry run) or id, and the transform names of a built job."""
    built = getattr(result, "job", None)  # a Dataflow dry run's apiclient.Job
    proto = getattr(built, "proto_pipeline", None)
    transforms = sorted(t.unique_name for t in proto.components.transforms.values()) if proto else []
    job = built.proto.name if built else (result.job_id() if getattr(result, "has_job", False) else None)
    return {**info, "launched": True, "dry_run": dry_run, "job": job, "transforms": transforms}


def read_summary(output_dir: str) -> dict:
    with FileSystems.open(FileSystems.join(output_dir, SUMMARY_FILE)) as handle:
        return json.loads(handle.read().decode("utf-8"))


def main(argv: list[str] | None = None) -> int:
    console.configure_logging()
    try:
        summary = run(argv)
        stopping.ignore_stops()  # the outputs are complete: what is left is printing the summary
    except UserError as err:
        print("error: " + " ".join(str(err).split()), file=sys.stderr)  # always one line
        return EXIT_USER_ERROR
    except BaseException:
        if not stopping.stopped_by:
            raise
        # Interrupted, as raised, or wrapped by Beam into another error on its way out of the running step.
        print(stopping.stopped_line(stopping.stopped_by[0]), file=sys.stderr)
        return stopping.exit_status(stopping.stopped_by[0])
    if summary.get("launched"):
        done = "built (dry run), not submitted" if summary["dry_run"] else "submitted, not waiting for it"
        print(f"job {summary['job']} with {len(summary['transforms'])} transforms {done}; "
              f"outputs will be in {summary['output']}")
        return 0
    print(format_summary(summary, output_names(summary["output"])))
    if too_many_errors(summary):
        print(f"error: {summary['images_failed']} of {summary['images_matched']} images failed, more than "
              f"--max-error-rate allows", file=sys.stderr)
        return EXIT_TOO_MANY_ERRORS
    return 0


def exit_now(status: int) -> None:
    """End the process with `status` once its output is flushed, skipping the interpreter's teardown.

    The outputs are complete and closed when main() returns; what is left is freeing TensorFlow's and Beam's
    objects one by one, which takes about a second and a half for nothing.
    """
    stopping.ignore_stops()
    remove_local_copies()
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)


if __name__ == "__main__":
    stopping.install()
    exit_now(main())
