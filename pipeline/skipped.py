"""Which files folder mode does not label, and under which kind they are counted.

A folder input takes every file whose name ends with an image extension (`model.contract.IMAGE_EXTENSIONS`, any
case). Everything else is skipped and counted by kind in summary.json (`files_skipped`) and on screen:

| kind | what |
|---|---|
| `system file` | droppings of operating systems and photo tools: `._*` (macOS resource forks, also on USB sticks and NAS shares), `.DS_Store`, `Thumbs.db`, `ehthumbs.db`, `desktop.ini`, `.picasa.ini`, `.directory` |
| `system folder` | every file inside thumbnail, metadata and recycle folders: `@eaDir` (Synology), `.@__thumb` (QNAP), `.thumbnails`, `__MACOSX`, `.AppleDouble`, `.Spotlight-V100`, `.fseventsd`, `.Trashes`, `.Trash-*`, `$RECYCLE.BIN`, `#recycle`, `@Recycle`, `System Volume Information` |
| `camera raw` | raw files (`.cr2`, `.nef`, `.arw`, `.dng`, ...): not decoded; export them as JPEG or TIFF |
| `video` | `.mov`, `.mp4`, ... (for example the video half of a Live Photo) |
| `sidecar` | metadata beside photos: `.xmp`, `.aae`, `.thm`, `.json` |
| `not an image by name` | anything else |

A pattern input takes what it matches, as given; these rules are for folders only.
"""

from model.contract import is_image_path

SYSTEM_FILE = "system file"
SYSTEM_FOLDER = "system folder"
CAMERA_RAW = "camera raw"
VIDEO = "video"
SIDECAR = "sidecar"
NOT_AN_IMAGE = "not an image by name"

SYSTEM_FILE_NAMES: frozenset[str] = frozenset(
    {".ds_store", "thumbs.db", "ehthumbs.db", "ehthumbs_vista.db", "desktop.ini", ".picasa.ini", ".directory"})
SYSTEM_FILE_PREFIXES: tuple[str, ...] = ("._",)
SYSTEM_FOLDER_NAMES: frozenset[str] = frozenset(
    {"@eadir", ".@__thumb", "@__thumb", ".thumbnails", "__macosx", ".appledouble", ".spotlight-v100", ".fseventsd",
     ".trashes", "$recycle.bin", "#recycle", "@recycle", "system volume information"})
SYSTEM_FOLDER_PREFIXES: tuple[str, ...] = (".trash-",)
EXTENSION_KINDS: dict[str, str] = {
    **dict.fromkeys((".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".dng", ".orf", ".rw2", ".raf",
                     ".pef", ".srw", ".x3f", ".3fr", ".erf", ".kdc", ".mrw", ".iiq", ".rwl"), CAMERA_RAW),
    **dict.fromkeys((".mov", ".mp4", ".m4v", ".avi", ".mkv", ".3gp", ".mts", ".m2ts", ".wmv", ".webm", ".mpg",
                     ".mpeg"), VIDEO),
    **dict.fromkeys((".xmp", ".aae", ".thm", ".json"), SIDECAR),
}


def is_system_folder(name: str) -> bool:
    """True for a folder name (one path component) whose files folder mode skips as `system folder`."""
    lower = name.lower()
    return lower in SYSTEM_FOLDER_NAMES or lower.startswith(SYSTEM_FOLDER_PREFIXES)


def skip_kind(name: str) -> str | None:
    """The kind under which folder mode skips a file of this name (one path component), or None to take it."""
    lower = name.lower()
    if lower in SYSTEM_FILE_NAMES or lower.startswith(SYSTEM_FILE_PREFIXES):
        return SYSTEM_FILE
    if is_image_path(lower):
        return None
    dot = lower.rfind(".")
    return EXTENSION_KINDS.get(lower[dot:], NOT_AN_IMAGE) if dot > 0 else NOT_AN_IMAGE
