"""Every command line of the project refuses a shortened flag instead of guessing which one was meant."""

import pytest

from bench import bench
from trainer import evaluate, options


@pytest.mark.parametrize("parse,argv", [
    (options.parse_args, ["--data-dir", "d", "--output-dir", "o", "--epoch", "3"]),
    (evaluate.parse_args, ["--model", "m", "--data-dir", "d", "--boot", "100"]),
    (bench.parse_args, ["--image", "10"]),
])
def test_a_shortened_flag_is_a_usage_error(parse, argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        parse(argv)
    assert exit_info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


@pytest.mark.parametrize("parse,argv", [
    (options.parse_args, ["--data-dir", "d", "--output-dir", "o", "--epochs", "3"]),
    (evaluate.parse_args, ["--model", "m", "--data-dir", "d", "--bootstrap", "100"]),
    (bench.parse_args, ["--images", "10"]),
])
def test_the_full_flag_is_accepted(parse, argv):
    assert parse(argv) is not None
