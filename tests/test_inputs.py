"""Input addressing and listing (pipeline/inputs.py) on folders made here: which files a folder, a file or a pattern
takes, what is skipped and counted, what becomes an error row, and how names that are not UTF-8 are written.

The machine runs as root, so `chmod 000` does not stop a listing: unlistable folders are made by replacing
`os.scandir` (what `os.walk` lists with) for one folder by a function that raises the OSError a real system
gives, or that deletes the folder first (a folder vanishing mid-run)."""

import errno
import os
import shutil

import pytest

from conftest import encode, synthetic_face
from pipeline.inputs import (CASE, ERROR, FILE, FOLDER, PATTERN, SKIP, TAKE, InputError, check_input,
                             display_path, list_input, resolve_input, survey_input)
from pipeline.skipped import CAMERA_RAW, NOT_AN_IMAGE, SIDECAR, SYSTEM_FILE, SYSTEM_FOLDER, VIDEO
from pipeline.thumbnails import read_source

FACE = encode(synthetic_face(True, seed=3))


def put(path, data=FACE):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return str(path)


def taken(spec_text):
    """(paths taken, error rows as {path: reason}) of listing --input spec_text."""
    paths, errors = [], {}
    for event, value in list_input(resolve_input(spec_text)):
        if event == TAKE:
            paths.append(value.path)
        elif event == ERROR:
            errors[value.path] = value.error
    assert len(paths) == len(set(paths)) and not set(paths) & set(errors)
    return sorted(paths), errors


@pytest.mark.parametrize("name", ["faces [party]", "what?", "stars*", "{braces,too}", "[!x]", "back\\slash",
                                  "50% off", "#1 ~tilde", " leading space", "ünï 笑"])
def test_an_existing_folder_is_walked_whatever_its_name(tmp_path, name):
    folder = tmp_path / name
    expected = [put(folder / "a.jpg"), put(folder / "sub" / "b.PNG")]
    assert resolve_input(str(folder)).kind == FOLDER
    assert taken(str(folder)) == (sorted(expected), {})


@pytest.mark.parametrize("name", ["me.jpg", "me [1].jpg", "scan", "IMG*.JPG", "photo.jpg.download"])
def test_an_existing_file_is_one_file_whatever_its_name(tmp_path, name):
    path = put(tmp_path / name)
    put(tmp_path / "other.jpg")
    assert resolve_input(path).kind == FILE
    assert taken(path) == ([path], {})


def camera_folder(root):
    """IMG_0001.JPG at the top, 2026-05/IMG_0002.JPG below, lower-case .jpg files beside them."""
    return {name: put(root / name) for name in ["IMG_0001.JPG", "2026-05/IMG_0002.JPG", "a.jpg", "2026-05/b.jpg"]}


@pytest.mark.parametrize("pattern,names", [
    ("**/*.jpg", ["IMG_0001.JPG", "2026-05/IMG_0002.JPG", "a.jpg", "2026-05/b.jpg"]),  # ** matches no folder too
    ("2026-*/*.jpg", ["2026-05/IMG_0002.JPG", "2026-05/b.jpg"]),
    ("*.Jpg", ["IMG_0001.JPG", "a.jpg"]),
    ("IMG_*.jpg", ["IMG_0001.JPG"]),
    ("**/IMG_000[12].jpg", ["IMG_0001.JPG", "2026-05/IMG_0002.JPG"]),
    ("**/{a,b}.jpg", ["a.jpg", "2026-05/b.jpg"]),
    ("2026-05/*", ["2026-05/IMG_0002.JPG", "2026-05/b.jpg"]),
])
def test_patterns_mean_what_a_globstar_shell_means_with_case_blind_extensions(tmp_path, pattern, names):
    files = camera_folder(tmp_path)
    spec = resolve_input(str(tmp_path / pattern))
    assert spec.kind == PATTERN
    assert taken(spec.text) == (sorted(files[n] for n in names), {})


def test_files_a_pattern_misses_only_by_case_are_named(tmp_path):
    files = camera_folder(tmp_path)
    put(tmp_path / "img_9.jpg")
    survey = check_input(resolve_input(str(tmp_path / "**" / "img_*.jpg")))
    assert survey.matched == 1
    assert sorted(survey.case_excluded) == sorted([files["IMG_0001.JPG"], files["2026-05/IMG_0002.JPG"]])


def test_a_pattern_that_matches_nothing_but_by_case_is_a_clear_error(tmp_path):
    camera_folder(tmp_path)
    with pytest.raises(InputError, match=r"matches no files: .*; 2 image files match if case is ignored"):
        check_input(resolve_input(str(tmp_path / "**" / "img_*.jpg")))


def test_hidden_files_and_folders_are_not_matched_by_wildcards(tmp_path):
    keep = put(tmp_path / "a.jpg")
    put(tmp_path / "._a.jpg")
    put(tmp_path / ".cache" / "b.jpg")
    assert taken(str(tmp_path / "**" / "*.jpg")) == ([keep], {})
    assert taken(str(tmp_path / ".cache" / "*.jpg"))[0] == [str(tmp_path / ".cache" / "b.jpg")]


def test_relative_patterns_and_folders_work_from_the_current_folder(tmp_path, monkeypatch):
    camera_folder(tmp_path / "photos")
    monkeypatch.chdir(tmp_path)
    assert taken("photos/**/IMG_*.jpg")[0] == ["photos/2026-05/IMG_0002.JPG", "photos/IMG_0001.JPG"]
    assert taken("photos")[0] == sorted(["photos/IMG_0001.JPG", "photos/2026-05/IMG_0002.JPG", "photos/a.jpg",
                                         "photos/2026-05/b.jpg"])
    monkeypatch.chdir(tmp_path / "photos")
    assert taken("*.jpg")[0] == ["IMG_0001.JPG", "a.jpg"]


def test_folder_mode_skips_and_counts_by_kind(tmp_path):
    expected = [put(tmp_path / n) for n in ["a.jpg", "b.heic", "c.avif", "d.jfif", "e.JPEG", ".hidden.png"]]
    skipped = {"._a.jpg": SYSTEM_FILE, ".DS_Store": SYSTEM_FILE, "Thumbs.db": SYSTEM_FILE,
               "sub/desktop.ini": SYSTEM_FILE, "@eaDir/a.jpg/SYNOFILE_THUMB_XL.jpg": SYSTEM_FOLDER,
               "sub/.@__thumb/x.jpg": SYSTEM_FOLDER, "__MACOSX/._a.jpg": SYSTEM_FOLDER,
               ".Trash-1000/files/old.jpg": SYSTEM_FOLDER, "IMG_1.CR2": CAMERA_RAW, "IMG_1.dng": CAMERA_RAW,
               "IMG_1.MOV": VIDEO, "IMG_1.AAE": SIDECAR, "a.jpg.xmp": SIDECAR, "notes.txt": NOT_AN_IMAGE,
               "Makefile": NOT_AN_IMAGE}
    for name in skipped:
        put(tmp_path / name, b"x")
    survey = survey_input(resolve_input(str(tmp_path)))
    assert survey.matched == len(expected)
    counts = {}
    for kind in skipped.values():
        counts[kind] = counts.get(kind, 0) + 1
    assert dict(survey.skipped) == counts
    assert taken(str(tmp_path))[0] == sorted(expected)


UNLISTABLE = [
    (PermissionError, errno.EACCES, "Permission denied"),
    (OSError, errno.EIO, "Input/output error"),  # a failing disk
    (OSError, errno.ESTALE, "Stale file handle"),  # a network share that went away
]


@pytest.fixture
def unlistable(monkeypatch):
    """unlistable(folder, error_type, code): listing that folder raises that error, as the system would."""
    real_scandir = os.scandir

    def make(folder, error_type, code):
        def scandir(path="."):
            if isinstance(path, str) and path == str(folder):
                raise error_type(code, os.strerror(code), os.fspath(path))
            return real_scandir(path)
        monkeypatch.setattr(os, "scandir", scandir)
    return make


@pytest.mark.parametrize("error_type,code,words", UNLISTABLE)
def test_a_subfolder_that_cannot_be_listed_is_an_error_row(tmp_path, unlistable, error_type, code, words):
    keep = put(tmp_path / "a.jpg")
    put(tmp_path / "private" / "b.jpg")
    unlistable(tmp_path / "private", error_type, code)
    assert taken(str(tmp_path)) == ([keep], {str(tmp_path / "private"): f"folder cannot be listed: {words}"})
    assert taken(str(tmp_path / "**" / "*.jpg"))[1] == {str(tmp_path / "private"): f"folder cannot be listed: {words}"}


def test_a_folder_that_vanishes_while_listed_is_an_error_row(tmp_path, monkeypatch):
    keep = put(tmp_path / "a.jpg")
    put(tmp_path / "gone" / "b.jpg")
    real_scandir = os.scandir

    def scandir(path="."):
        if isinstance(path, str) and path == str(tmp_path / "gone"):
            shutil.rmtree(path)
        return real_scandir(path)
    monkeypatch.setattr(os, "scandir", scandir)
    assert taken(str(tmp_path)) == ([keep], {str(tmp_path / "gone"): "folder cannot be listed: No such file or "
                                                                       "directory"})


def test_an_input_folder_that_cannot_be_listed_stops_with_one_line(tmp_path, unlistable):
    put(tmp_path / "a.jpg")
    unlistable(tmp_path, PermissionError, errno.EACCES)
    with pytest.raises(InputError, match=r"^cannot list input .* \(Permission denied\)$"):
        check_input(resolve_input(str(tmp_path)))


def test_pipes_and_broken_links_are_error_rows(tmp_path):
    keep = put(tmp_path / "a.jpg")
    os.mkfifo(tmp_path / "pipe.jpg")
    (tmp_path / "broken.jpg").symlink_to(tmp_path / "missing.jpg")
    paths, errors = taken(str(tmp_path))
    assert paths == [keep]
    assert errors == {str(tmp_path / "pipe.jpg"): "not a regular file (a device, pipe or socket)",
                      str(tmp_path / "broken.jpg"): "broken symbolic link (its target does not exist)"}


@pytest.mark.parametrize("raw,shown", [
    (b"caf\xe9.jpg", "caf\\xe9.jpg"),  # Latin-1 from an old Windows archive
    (b"\x93quoted\x94.jpg", "\\x93quoted\\x94.jpg"),  # cp1252 quotes
    (b"\x93\xfa\x96\x7b.jpg", "\\x93\\xfa\\x96{.jpg"),  # Shift-JIS
    (b"cut\xe2\x82.jpg", "cut\\xe2\\x82.jpg"),  # a UTF-8 sequence cut short
    ("naïve.jpg".encode(), "naïve.jpg"),  # valid UTF-8 is written as it is
    (b"a\\x41\xff.jpg", "a\\x41\\xff.jpg"),  # a name's own backslash-x text beside a byte that is not UTF-8
])
def test_names_that_are_not_utf8_are_listed_and_shown_byte_for_byte(tmp_path, raw, shown):
    folder = os.fsencode(str(tmp_path))
    with open(os.path.join(folder, raw), "wb") as handle:
        handle.write(FACE)
    (paths, errors) = taken(str(tmp_path))
    assert len(paths) == 1 and not errors
    assert os.fsencode(paths[0]) == os.path.join(folder, raw)  # the real name, to open the file
    assert display_path(paths[0]) == str(tmp_path / shown)
    assert display_path(paths[0]).encode("utf-8")  # always writable as UTF-8
    # The report opens the path as the outputs write it: the written name leads back to the file.
    assert read_source(display_path(paths[0])) == (FACE, None)


def test_skipped_counts_and_matches_are_the_same_for_every_listing_of_a_tree(tmp_path):
    """matched = taken + error rows; no path is in two of taken, errors, skipped."""
    put(tmp_path / "a.jpg")
    put(tmp_path / "b.txt", b"x")
    (tmp_path / "dead.png").symlink_to(tmp_path / "nothing.png")
    events = list(list_input(resolve_input(str(tmp_path))))
    kinds = [e for e, _ in events]
    survey = survey_input(resolve_input(str(tmp_path)))
    assert survey.matched == kinds.count(TAKE) + kinds.count(ERROR) == 2
    assert kinds.count(SKIP) == sum(survey.skipped.values()) == 1 and CASE not in kinds


def test_every_folder_is_walked_once_whichever_route_the_walk_meets_first(tmp_path):
    """A link beside the folder it points to ('a_link' -> 'nested', met first) labelled every file twice."""
    top = tmp_path / "in"
    inside = [put(top / "nested" / "n.jpg"), put(top / "z" / "real" / "r.jpg")]
    (top / "a_link").symlink_to(top / "nested", target_is_directory=True)
    (top / "b").mkdir()
    (top / "b" / "deeper_link").symlink_to(top / "z" / "real", target_is_directory=True)
    outside = tmp_path / "elsewhere"
    put(outside / "o.jpg")
    put(outside / "sub" / "s.jpg")
    for name in ("first_route", "second_route"):
        (top / name).symlink_to(outside, target_is_directory=True)
    paths, errors = taken(str(top))
    assert not errors
    assert [p for p in paths if p in inside] == sorted(inside)  # in their own place, not under the links to them
    through_links = sorted(os.path.relpath(p, top).split(os.sep, 1)[1] for p in paths if p not in inside)
    assert through_links == ["o.jpg", os.path.join("sub", "s.jpg")]  # the outside folder once, by one route


@pytest.mark.parametrize("pattern", ["missing/*.jpg", "missing/**/*.jpg", "Faces/*.jpg", "faces/a.jpg/*.jpg"])
def test_a_pattern_whose_folder_is_missing_matches_nothing(tmp_path, monkeypatch, pattern):
    """A pattern under a missing folder (a typo, wrong case) was one 'folder cannot be listed' row in a run that
    succeeded, replacing the night's outputs; as a pattern that matches nothing it is one error line."""
    put(tmp_path / "faces" / "a.jpg")
    monkeypatch.chdir(tmp_path)
    for text in (pattern, str(tmp_path / pattern)):
        with pytest.raises(InputError, match=r"^input not found or matches no files: "):
            check_input(resolve_input(text))


def test_a_pattern_whose_folder_cannot_be_listed_is_one_error_line(tmp_path, monkeypatch):
    put(tmp_path / "faces" / "a.jpg")
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path) == str(tmp_path / "faces"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    with pytest.raises(InputError, match=r"^cannot list input .*/faces/\*\.jpg \(Permission denied\)$"):
        check_input(resolve_input(str(tmp_path / "faces" / "*.jpg")))


def test_a_pattern_ending_in_globstar_takes_every_file_below_as_bash_does(tmp_path):
    """'DIR/**' took only the files directly in DIR (none here): bash's globstar takes the whole tree."""
    expected = [put(tmp_path / "in" / "a" / "b.jpg"), put(tmp_path / "in" / "a" / "deep" / "c.png")]
    assert taken(str(tmp_path / "in" / "**")) == (sorted(expected), {})
    assert taken(str(tmp_path / "in" / "a" / "**")) == (sorted(expected), {})


def test_a_pattern_follows_links_as_written_and_stops_at_loops(tmp_path):
    """A link matched by a wildcard was dropped when its folder was walked in its own place: 'E/*/deep/*/*.jpg'
    matched nothing although bash lists E/b/deep/link/x.jpg."""
    top = tmp_path / "E"
    real = put(top / "a" / "x.jpg")
    (top / "b" / "deep").mkdir(parents=True)
    (top / "b" / "deep" / "link").symlink_to(top / "a", target_is_directory=True)
    (top / "b" / "up").symlink_to(top, target_is_directory=True)  # a loop
    through_link = str(top / "b" / "deep" / "link" / "x.jpg")
    assert taken(str(top / "*" / "deep" / "*" / "*.jpg")) == ([through_link], {})
    assert taken(str(top / "**" / "link" / "*.jpg")) == ([through_link], {})
    assert taken(str(top / "**" / "*.jpg")) == (sorted([real, through_link]), {})  # each way once, no loop


def test_a_pattern_under_a_folder_named_in_another_case_names_that_folder(tmp_path, monkeypatch):
    put(tmp_path / "faces" / "Night" / "a.jpg")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(InputError, match=r"^input not found or matches no files: Faces/night/\*\.jpg; the folder "
                                         r"faces/Night exists \(its name differs in case\)$"):
        check_input(resolve_input("Faces/night/*.jpg"))
    with pytest.raises(InputError, match=rf"; the folder {tmp_path / 'faces'} exists"):
        check_input(resolve_input(str(tmp_path / "FACES" / "**" / "*.jpg")))
    with pytest.raises(InputError, match=r"matches no files: Other/\*\.jpg$"):  # nothing to suggest
        check_input(resolve_input("Other/*.jpg"))


def test_each_brace_alternative_ending_in_an_image_extension_matches_it_in_any_case(tmp_path):
    expected = [put(tmp_path / "a.JPG"), put(tmp_path / "b.png"), put(tmp_path / "c.Png")]
    put(tmp_path / "d.gif")
    assert taken(str(tmp_path / "*.{jpg,png}")) == (sorted(expected), {})
    assert taken(str(tmp_path / "{a,b}.{jpg,png}")) == (sorted(expected[:2]), {})


def test_a_link_to_the_root_folder_is_a_loop_in_both_modes(tmp_path):
    expected = put(tmp_path / "in" / "a.jpg")
    (tmp_path / "in" / "root").symlink_to("/", target_is_directory=True)
    assert taken(str(tmp_path / "in")) == ([expected], {})
    assert taken(str(tmp_path / "in" / "**" / "a.jpg")) == ([expected], {})


def test_a_broken_link_that_may_be_a_folder_is_an_error_row_not_a_skipped_file(tmp_path):
    """A link to a folder on a disk that is gone ('2026 -> /mnt/nas/2026') was counted as 'not an image by name',
    so a night's run skipped a whole folder of photos without an error."""
    top = tmp_path / "in"
    kept = put(top / "a.jpg")
    (top / "2026").symlink_to(tmp_path / "gone" / "2026")
    (top / "notes.txt").symlink_to(tmp_path / "gone" / "notes.txt")  # named as no image: skipped, as before
    assert taken(str(top)) == ([kept], {str(top / "2026"): "broken symbolic link (its target does not exist)"})
    survey = survey_input(resolve_input(str(top)))
    assert survey.skipped == {NOT_AN_IMAGE: 1}


def test_a_file_link_loop_and_an_unreachable_file_get_plain_reasons(tmp_path, monkeypatch):
    kept = put(tmp_path / "a.jpg")
    (tmp_path / "loop.jpg").symlink_to(tmp_path / "loop.jpg")
    put(tmp_path / "locked.jpg")
    real_stat = os.stat

    def stat(path, *args, **kwargs):  # as a file under a folder without search permission fails (not for root)
        if os.fspath(path) == str(tmp_path / "locked.jpg"):
            raise PermissionError(errno.EACCES, "Permission denied", os.fspath(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    assert taken(str(tmp_path)) == ([kept], {
        str(tmp_path / "loop.jpg"): "symbolic link loop (the link leads back to itself)",
        str(tmp_path / "locked.jpg"): "permission denied (this user cannot read the file)"})
