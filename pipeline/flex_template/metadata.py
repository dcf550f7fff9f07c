"""The Flex Template's metadata.json, derived from the job's parser (`pipeline.flags`) so the two cannot drift.

Every flag of the job is either a template parameter (TEMPLATE_PARAMETERS: name = the flag's dest, help text and
optionality from the parser) or left out on purpose with its reason (LEFT_OUT); a new flag that is neither
fails `tests/test_flex_template.py`. `make flex-metadata` rewrites pipeline/flex_template/metadata.json.

    python -m pipeline.flex_template.metadata > pipeline/flex_template/metadata.json
"""

import json
import re
import sys
from pathlib import Path

from pipeline.flags import build_parser

METADATA_FILE: Path = Path(__file__).resolve().parent / "metadata.json"
TEMPLATE_NAME: str = "facelabel"
TEMPLATE_DESCRIPTION: str = ("Label face images as happy or sad: labels.csv, errors.csv and summary.json in the "
                             "output folder (labels and errors as sorted shards above 250,000 rows)")
# Job flags the template takes, in this order. Paths must be gs:// (Dataflow workers cannot see a disk); a flag
# with choices accepts exactly those.
TEMPLATE_PARAMETERS: tuple[str, ...] = ("input", "output", "model", "faces", "precision", "mirror_average")
GCS_PATH_REGEX: str = "^gs://.+"
# Job flags the template does not take, and why.
LEFT_OUT: dict[str, str] = {
    "help": "not a job parameter",
    "min_batch_size": "tuning; the defaults suit Dataflow's one process per vCPU",
    "max_batch_size": "tuning; the defaults suit Dataflow's one process per vCPU",
    "inference_threads": "tuning; the default on Dataflow is 1 thread per process",
    "incremental": "a flag without a value; a nightly template run writes into a new dated folder",
    "max_error_rate": "its exit status needs a launcher that waits for the job; a template launch does not",
    "report": "needs a launcher that waits for the job; run make report RUN=gs://... afterwards",
}


def parameter(action) -> dict:
    """One Flex Template parameter (Dataflow's ParameterMetadata) from an argparse action."""
    regex = GCS_PATH_REGEX if not action.choices else "^(" + "|".join(map(re.escape, action.choices)) + ")$"
    return {"name": action.dest, "label": action.dest.replace("_", " ").capitalize(),
            "helpText": action.help.replace("local or gs://", "gs://"), "isOptional": not action.required,
            "regexes": [regex]}


def template_metadata() -> dict:
    """metadata.json's content: name, description and the parameters, from the job's parser (pipeline.flags)."""
    actions = {action.dest: action for action in build_parser()._actions}
    return {"name": TEMPLATE_NAME, "description": TEMPLATE_DESCRIPTION,
            "parameters": [parameter(actions[name]) for name in TEMPLATE_PARAMETERS]}


def main() -> int:
    json.dump(template_metadata(), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
