"""The labelling job's own command-line flags: the parser (`build_parser`, from which the Flex Template's
parameters are derived too), its argparse types, and the message for an unknown flag or a bad value of Beam's.

Each bad value becomes one `error:` line from the parser (see model.console.OneLineParser), never a traceback.
"""

import argparse
import difflib
import sys

from apache_beam.options.pipeline_options import PipelineOptions

from model import console
from model.contract import DEFAULT_MODEL_DIR
from model.lite import INT8_VERSION_SUFFIX, PRECISION_FLOAT32, PRECISIONS
from model.mirror import MIRROR_AUTO, MIRROR_SETTINGS, MIRROR_VERSION_SUFFIX
from pipeline.model_handler import DEFAULT_MAX_BATCH_SIZE
from pipeline.rows import FACE_MODES, FACES_LARGEST, NO_FACE

# In --output, replaced by the launch date: a scheduler's fixed request still writes each night to its own folder.
DATE_PLACEHOLDER: str = "{date}"
EXIT_TOO_MANY_ERRORS: int = 3
DESCRIPTION: str = "Label the faces in a folder of images as happy or sad with Apache Beam."


def at_least(minimum: int):
    """argparse type: a whole number no smaller than minimum (a bad value is one `error:` line, not a crash)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number of at least {minimum}, got {text!r}")
        return value
    parse.__name__ = f"whole number >= {minimum}"
    return parse


def error_rate(text: str) -> float:
    """argparse type for --max-error-rate: a fraction from 0 to 1."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a fraction between 0 and 1, got {text!r}")
    return value


class _RaisingParser(argparse.ArgumentParser):
    """A parser whose mistakes are raised (ValueError with argparse's message), not printed with a usage."""

    def error(self, message: str):
        raise ValueError(message)


def bad_pipeline_args(pipeline_args: list[str], own_flags: list[str]) -> str | None:
    """A message naming the first flag neither this job nor any Beam PipelineOptions knows, or a Beam option's bad
    value (Beam itself would print its 125-line usage, then exit); else None."""
    parser = _RaisingParser(add_help=False, allow_abbrev=False)
    for options_class in PipelineOptions.__subclasses__():
        options_class._add_argparse_args(parser)  # how Beam itself collects every option
    try:
        _, unknown = parser.parse_known_args(pipeline_args)
    except ValueError as err:  # e.g. "argument --direct_num_workers: invalid int value: 'abc'"
        return str(err)
    flags = [arg for arg in unknown if arg.startswith("-")]
    if not flags and not unknown:
        return None
    bad = (flags or unknown)[0]
    known_flags = [flag for action in parser._actions for flag in action.option_strings] + own_flags
    close = difflib.get_close_matches(bad.split("=", 1)[0], known_flags, n=1)
    return f"unrecognized argument: {bad}" + (f" (did you mean {close[0]}?)" if close else "")


def build_parser() -> console.OneLineParser:
    """The job's own flags (the Flex Template's parameters are derived from these: pipeline/flex_template)."""
    # A shortened flag is refused (OneLineParser), never taken for ours or Beam's.
    parser = console.OneLineParser(prog="python -m pipeline.run", description=DESCRIPTION,
                                   epilog="Any other --flag is passed to Beam's PipelineOptions.")
    parser.add_argument("--input", required=True,
                        help="an existing folder (walked recursively, image files by extension in any case), an "
                             "existing file, or else a glob as in bash with globstar: * ? [..] {a,b} within a name, "
                             "** for any folders (none included); a literal image extension matches in any case; "
                             "local or gs://")
    parser.add_argument("--output", required=True,
                        help=f"output folder, local or gs://; {DATE_PLACEHOLDER} in it becomes the launch date "
                             "(UTC, YYYY-MM-DD), for a scheduled nightly run")
    parser.add_argument("--model", default=str(DEFAULT_MODEL_DIR),
                        help="SavedModel folder, local or gs:// (default: the shipped model)")
    parser.add_argument("--min-batch-size", type=at_least(1), default=None, help="RunInference's smallest batch")
    parser.add_argument("--max-batch-size", type=at_least(1), default=None, help="RunInference's largest batch")
    parser.add_argument("--inference-threads", type=at_least(0), default=None, metavar="N",
                        help="model threads per worker process (TensorFlow, or LiteRT with --precision int8; 0: "
                             "the library's own choice, all cores); "
                             "default: all cores for one in-process worker, cores / --direct_num_workers in "
                             "multi_processing mode, 1 on Dataflow (one process per vCPU)")
    parser.add_argument("--incremental", action="store_true",
                        help="label only images that are new or changed (size or modification time) since the "
                             "labels.csv already in --output, or were labelled by another model version; carry "
                             "the other rows over, so the output still covers the whole input")
    parser.add_argument("--max-error-rate", type=error_rate, default=None, metavar="R",
                        help=f"exit with status {EXIT_TOO_MANY_ERRORS} (after writing all outputs) when more than "
                             "this fraction of the matched images failed, e.g. 0.01; default: off")
    parser.add_argument("--faces", choices=FACE_MODES, default=FACES_LARGEST,
                        help="which faces get a row: 'largest' (default): one row per image, for its largest face; "
                             "'all': one row per face found; 'none': no face finding, the whole image is the face "
                             "(fast, for folders of ready face crops). An image without a face gets the label "
                             f"{NO_FACE}")
    parser.add_argument("--precision", choices=PRECISIONS, default=PRECISION_FLOAT32,
                        help="'float32' (default): the SavedModel; 'int8': its int8 copy beside it (made by "
                             "python -m trainer.quantize --write; the shipped model has one), several times faster "
                             "per face on most CPUs; a few faces near the threshold may get the other label, so its "
                             f"rows carry the model version with {INT8_VERSION_SUFFIX}")
    # Also spelt with an underscore: the Flex Template passes each parameter as --<name>=<value>.
    parser.add_argument("--mirror-average", "--mirror_average", choices=MIRROR_SETTINGS, default=MIRROR_AUTO,
                        help="average each face's answer with its mirror image's (steadier, better ranked; two "
                             "classifier passes per face): 'auto' (default) where faces are found, not with "
                             "--faces none; 'on'; 'off'. Rows of a model so served carry its version with "
                             f"{MIRROR_VERSION_SUFFIX}")
    parser.add_argument("--report", action="store_true",
                        help="after a run that waits for its end, also write report.html (counts, histogram, "
                             "errors, faces) into --output; see python -m pipeline.report")
    return parser


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, list[str]]:
    """(the job's own arguments, the rest for Beam); a flag neither knows is a one-line usage error."""
    parser = build_parser()
    own_flags = [flag for action in parser._actions for flag in action.option_strings]
    # Unknown flags first, with every flag optional for that pass: a misspelt --output is named as such ("did you
    # mean"), not reported as a missing --output.
    # (--help is left to the second pass, so its usage line shows --input and --output as required.)
    given = sys.argv[1:] if argv is None else argv
    if not {"-h", "--help"} & set(given):
        required = [action for action in parser._actions if action.required]
        for action in required:
            action.required = False
        bad = bad_pipeline_args(parser.parse_known_args(argv)[1], own_flags)
        if bad:
            parser.error(bad)
        for action in required:
            action.required = True
    args, rest = parser.parse_known_args(argv)
    for flag, value, what in (("--input", args.input, "a folder, a file or a pattern"),
                              ("--output", args.output, "the folder to write the results into"),
                              ("--model", args.model, "a model folder, or leave it out for the shipped model")):
        if not value.strip():
            parser.error(f"{flag} is empty: give {what}")
        if sum(arg == flag or arg.startswith(flag + "=") for arg in given) > 1:  # argparse keeps the last alone
            several = "; a pattern such as '{a,b}/*.jpg' or a parent folder takes several" if flag == "--input" else ""
            parser.error(f"{flag} is given more than once: give one ({what}{several})")
    largest = args.max_batch_size or DEFAULT_MAX_BATCH_SIZE
    if args.min_batch_size is not None and args.min_batch_size > largest:
        parser.error(f"--min-batch-size {args.min_batch_size} is above "
                     + (f"--max-batch-size {largest}" if args.max_batch_size else f"the default --max-batch-size "
                                                                                  f"{largest}"))
    return args, rest
