"""The input grammar on gs:// (pipeline/inputs.py), against the local Cloud Storage server: the same rules as on
local disk, for folders with glob characters, single objects, globstar patterns and skipped files."""

import pytest

from conftest import encode, synthetic_face
from pipeline.inputs import ERROR, FILE, FOLDER, PATTERN, TAKE, InputError, check_input, list_input, resolve_input

FACE = encode(synthetic_face(True, seed=4))


def taken(text):
    events = list(list_input(resolve_input(text)))
    assert not [value for event, value in events if event == ERROR]
    return sorted(value.path for event, value in events if event == TAKE)


def test_gcs_folder_with_glob_characters_is_a_folder_with_skip_rules(gcs):
    faces = [gcs.upload(f"grammar/faces [party]/{name}", FACE) for name in ["a.jpg", "sub/b.HEIC", "c.jfif"]]
    for name in [".DS_Store", "@eaDir/a.jpg/thumb.jpg", "notes.txt"]:
        gcs.upload(f"grammar/faces [party]/{name}", b"x")
    gcs.upload("grammar/faces [party]/sub/", b"")  # a folder placeholder object, as the console makes
    gcs.upload("grammar/faces p/other.jpg", FACE)  # what '[party]' would match as a pattern
    folder = gcs.uri("grammar/faces [party]")
    assert resolve_input(folder).kind == FOLDER
    assert taken(folder) == sorted(faces)
    survey = check_input(resolve_input(folder))
    assert survey.matched == 3 and dict(survey.skipped) == {"system file": 1, "system folder": 1,
                                                             "not an image by name": 1}


def test_gcs_object_is_one_file_and_patterns_use_globstar_and_case_blind_extensions(gcs):
    top = gcs.upload("cam/IMG_0001.JPG", FACE)
    below = gcs.upload("cam/2026-05/IMG_0002.JPG", FACE)
    lower = gcs.upload("cam/2026-05/b.jpg", FACE)
    assert resolve_input(top).kind == FILE and taken(top) == [top]
    pattern = gcs.uri("cam/**/*.jpg")
    assert resolve_input(pattern).kind == PATTERN
    assert taken(pattern) == sorted([top, below, lower])
    assert taken(gcs.uri("cam/2026-*/*.jpg")) == sorted([below, lower])
    survey = check_input(resolve_input(gcs.uri("cam/**/[bi]*.jpg")))
    assert survey.matched == 1 and sorted(survey.case_excluded) == sorted([top, below])
    with pytest.raises(InputError, match="matches no files: .*; 2 image files match if case is ignored"):
        check_input(resolve_input(gcs.uri("cam/**/img_*.jpg")))
