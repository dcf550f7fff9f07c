"""The machine a model records (`trainer/machine.py`) and `make train`'s comparison with the shipped model."""

import json

import pytest

from model.metadata import ModelMetadata
from trainer import machine

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
cpu family\t: 25
model\t\t: 17
model name\t: AMD EPYC 9R14
cache size\t: 1024 KB
flags\t\t: fpu sse2 sse4_2 avx avx2 fma avx512f avx512_bf16 vaes

processor\t: 1
vendor_id\t: AuthenticAMD
"""
SHIPPED = "facelabel-cnn-20261201-3db6986e"


def test_describe_reads_processor_kernel_flags_cache_and_libraries(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(CPUINFO)
    described = machine.describe(cpuinfo)
    assert described["processor"] == "AuthenticAMD family 25 model 17: AMD EPYC 9R14"
    # Only the instruction sets kernels dispatch on, sorted; fpu, sse2 and vaes are not among them.
    assert described["kernel_flags"] == "avx avx2 avx512_bf16 avx512f fma sse4_2"
    assert described["cache"] == "1024 KB"
    assert described["cores"] >= 1
    assert described["tensorflow"].startswith("2.") and described["numpy"][0].isdigit()
    unknown = machine.describe(tmp_path / "missing")
    assert unknown["processor"] == "unknown family unknown model unknown: unknown"
    assert unknown["kernel_flags"] == "unknown"


def write_model(folder, version, *, seed=1, described=None, data_digest="d1", test_accuracy=None):
    folder.mkdir()
    config = {"seed": seed, "block_filters": [24, 48], "train_seconds": 3000.0 + seed}
    if described is not None:
        config[machine.MACHINE_KEY] = described
    ModelMetadata(model_version=version, trained_on={"data_digest": data_digest},
                  training_config=config).write(folder)
    if test_accuracy is not None:
        report = {"images": 10, "accuracy": test_accuracy, "roc_auc": 0.98, "ece": 0.02,
                  "per_class": {"happy": {"recall": 0.9}, "sad": {"recall": 0.95}}}
        (folder / machine.TEST_METRICS_FILENAME).write_text(json.dumps(report))
    return folder


@pytest.fixture
def here():
    return machine.describe()


def test_the_same_weights_are_reproduced_whatever_the_date(tmp_path, here):
    shipped = write_model(tmp_path / "shipped", SHIPPED, described=here)
    new = write_model(tmp_path / "new", "facelabel-cnn-20261203-3db6986e", described=here)
    assert machine.compare(new, shipped) == [
        f"reproduced: facelabel-cnn-20261203-3db6986e has the same weights as {SHIPPED}, bit for bit"]


def test_other_weights_name_the_machine_that_differs(tmp_path, here):
    elsewhere = {**here, "processor": "AuthenticAMD family 25 model 17: AMD EPYC 9R14", "cores": 2}
    shipped = write_model(tmp_path / "shipped", SHIPPED, described=elsewhere, test_accuracy=0.9394)
    new = write_model(tmp_path / "new", "facelabel-cnn-20261203-0e57c692", described=here, test_accuracy=0.9339)
    lines = machine.compare(new, shipped)
    assert lines[0] == f"not reproduced: facelabel-cnn-20261203-0e57c692 has other weights than {SHIPPED}"
    text = "\n".join(lines)
    assert "trained on another machine" in text
    assert f"processor: {elsewhere['processor']} -> {here['processor']}" in text
    assert "recipe differs" not in text and "training faces differ" not in text  # train_seconds is not recipe
    assert "new facelabel-cnn-20261203-0e57c692, test split: 10 faces, accuracy 93.39%" in text
    assert f"shipped {SHIPPED}, test split: 10 faces, accuracy 93.94%, ROC AUC 0.9800" in text


def test_other_weights_name_a_different_recipe_data_or_unrecorded_machine(tmp_path, here):
    shipped = write_model(tmp_path / "shipped", SHIPPED)  # trained before machines were recorded
    new = write_model(tmp_path / "new", "facelabel-cnn-20261203-aaaaaaaa", seed=2, described=here, data_digest="d2")
    text = "\n".join(machine.compare(new, shipped))
    assert "the training faces differ" in text
    assert "the recipe differs: seed" in text
    assert f"{SHIPPED} does not record the machine it was trained on" in text
    assert "test split" not in text  # neither has test_metrics.json


def test_the_command_line_prints_the_comparison_or_one_error_line(tmp_path, here, capsys):
    shipped = write_model(tmp_path / "shipped", SHIPPED, described=here)
    again = write_model(tmp_path / "again", SHIPPED, described=here)
    assert machine.main([str(again), str(shipped)]) == 0
    assert capsys.readouterr().out.startswith("reproduced: ")
    assert machine.main([str(tmp_path / "nowhere"), str(shipped)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: no model in ") and "facelabel.json" in err
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "facelabel.json").write_text("{not json")
    assert machine.main([str(tmp_path / "broken"), str(shipped)]) == 2
    assert capsys.readouterr().err.startswith("error: ")
