"""Every command line of the project refuses a shortened flag instead of guessing which one was meant, and says
so in one line."""

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
    err = capsys.readouterr().err
    assert err.startswith("error: unrecognized arguments: ") and err.count("\n") == 1


@pytest.mark.parametrize("module", ["trainer.photos", "trainer.quantize", "trainer.views", "trainer.face_template",
                                    "pipeline.report", "app.server", "bench.photos", "bench.scale"])
def test_every_command_states_a_usage_mistake_in_one_line(module, capsys):
    import importlib

    with pytest.raises(SystemExit) as exit_info:
        importlib.import_module(module).main(["--no-such-flag"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err


@pytest.mark.parametrize("parse,argv", [
    (options.parse_args, ["--data-dir", "d", "--output-dir", "o", "--epochs", "3"]),
    (evaluate.parse_args, ["--model", "m", "--data-dir", "d", "--bootstrap", "100"]),
    (bench.parse_args, ["--images", "10"]),
])
def test_the_full_flag_is_accepted(parse, argv):
    assert parse(argv) is not None
