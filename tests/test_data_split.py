"""The trainer's validation split: deterministic, stratified, and never splitting duplicate images."""

import shutil

import pytest

from conftest import write_synthetic_dataset
from trainer import data as datasets


@pytest.fixture
def dataset(tmp_path):
    root = write_synthetic_dataset(tmp_path / "data", per_class=40)
    # Exact duplicates within a class, under other names and in a sub-folder.
    (root / "happy" / "nested").mkdir()
    for i in range(5):
        shutil.copy(root / "happy" / f"happy_{i:03d}.png", root / "happy" / "nested" / f"copy_{i}.PNG")
    # One image filed under both classes: its label cannot be trusted.
    shutil.copy(root / "sad" / "sad_000.png", root / "happy" / "conflict.png")
    return root


def test_split_is_deterministic_and_independent_of_listing_order(dataset):
    examples = datasets.list_examples(dataset)
    first = datasets.split_examples(examples, 0.25, seed=7)
    second = datasets.split_examples(list(reversed(examples)), 0.25, seed=7)
    assert sorted(e.path for e in first.validation) == sorted(e.path for e in second.validation)
    other_seed = datasets.split_examples(examples, 0.25, seed=8)
    assert sorted(e.path for e in other_seed.validation) != sorted(e.path for e in first.validation)


def test_split_is_stratified_and_keeps_duplicates_together(dataset):
    split = datasets.split_examples(datasets.list_examples(dataset), 0.25, seed=7)
    counts = split.counts()
    # 40 distinct contents per class (the copies add no new content): 10 of each go to validation.
    validation_contents = {e.content_hash for e in split.validation}
    train_contents = {e.content_hash for e in split.train}
    assert not validation_contents & train_contents
    assert len({e.content_hash for e in split.validation if e.label == 0}) == 10
    assert len({e.content_hash for e in split.validation if e.label == 1}) == 10
    assert counts["excluded_conflicting_labels"] == 2
    assert len(split.train) + len(split.validation) + len(split.conflicting) == 40 + 5 + 1 + 40


def test_missing_class_folder_is_a_clear_error(tmp_path):
    (tmp_path / "happy").mkdir()
    with pytest.raises(FileNotFoundError, match="class folder not found"):
        datasets.list_examples(tmp_path)


def test_images_are_read_once_hashing_keeps_the_bytes_for_decoding(dataset):
    examples = datasets.list_examples(dataset)
    expected, _ = datasets.load_arrays(examples)
    shutil.rmtree(dataset)  # a second read would now fail
    images, labels = datasets.load_arrays(examples)
    assert (images == expected).all() and len(labels) == len(examples)


def test_split_as_trained_refuses_other_faces(dataset, tmp_path):
    listed = datasets.list_examples(dataset)
    split = datasets.split_examples(listed)
    recorded = {"split": split.counts(), "validation_fraction": 0.15, "split_seed": 2013}
    assert datasets.split_as_trained(listed, recorded).counts() == split.counts()
    assert datasets.split_as_trained(listed, {**recorded, "data_digest": datasets.listing_digest(listed)}).validation
    fewer = listed[1:]
    with pytest.raises(ValueError, match="not the faces the model was trained on"):  # by content digest
        datasets.split_as_trained(fewer, {**recorded, "data_digest": datasets.listing_digest(listed)})
    with pytest.raises(ValueError, match="counts differ"):  # a model recorded before digests: by its counts
        datasets.split_as_trained(listed + write_more(tmp_path), recorded)
    assert datasets.split_as_trained(fewer, {}).validation  # metadata that records neither is trusted


def write_more(tmp_path) -> list[datasets.Example]:
    return datasets.list_examples(write_synthetic_dataset(tmp_path / "more", per_class=30))
