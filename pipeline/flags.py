"""Checks of the job's own command-line flags: argparse types, and the message for an unknown flag or a bad
value of Beam's.

Each bad value becomes one `error:` line from the parser (see model.console.OneLineParser), never a traceback.
"""

import argparse
import difflib

from apache_beam.options.pipeline_options import PipelineOptions


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
