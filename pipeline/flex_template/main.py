"""The Flex Template's entry point (FLEX_TEMPLATE_PYTHON_PY_FILE): launch the labelling job and return.

The template launcher runs this file with the template parameters (--input=gs://... --output=gs://...
[--model=gs://...]) and Dataflow's own options (--runner, --project, --region, --temp_location, --setup_file,
...). A Flex Template launcher must not wait for the job, so --no_wait_until_finish is added: the job is checked
(input listed, model signature read, output writable) and submitted, and the launcher ends; the job writes its
outputs straight into --output.
"""

import sys

from pipeline.run import exit_now, main

NO_WAIT_FLAG: str = "--no_wait_until_finish"


def launch(argv: list[str]) -> int:
    """Run pipeline.run's main with argv (and NO_WAIT_FLAG); returns its exit status (2: a mistake, one line)."""
    return main([*argv, *([] if NO_WAIT_FLAG in argv else [NO_WAIT_FLAG])])


if __name__ == "__main__":
    exit_now(launch(sys.argv[1:]))
