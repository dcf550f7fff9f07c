"""The end-of-run summary a person reads on screen, and the --max-error-rate verdict, from summary.json's content."""

from apache_beam.io.filesystems import FileSystems

from pipeline.outputs import ERRORS_FILE, RUN_FILES
from pipeline.rows import FACES_ALL, FACES_NONE, NO_FACE

# How many error kinds the end-of-run summary lists (all of them are in summary.json).
SUMMARY_ERROR_KINDS: int = 5


def too_many_errors(summary: dict) -> bool:
    """True when the run's failed fraction exceeds the --max-error-rate recorded in its summary."""
    matched, limit = summary["images_matched"], summary.get("max_error_rate")
    return limit is not None and matched > 0 and summary["images_failed"] / matched > limit


def format_summary(summary: dict, outputs: list[str] | None = None) -> str:
    """The end-of-run summary: one screen a person reads the next morning. `outputs`: the output files' names
    (default: the single-file names)."""
    matched, failed = summary["images_matched"], summary["images_failed"]
    labelled = summary["images_labelled"]
    share = lambda n, total: f"{100.0 * n / total:.1f}%" if total else "-"  # noqa: E731
    carried = summary.get("images_carried_over", 0)
    carried_note = f" ({carried:,} of them carried over unchanged)" if carried else ""
    no_face = summary.get("images_no_face", 0)
    lines = [f"facelabel: {matched:,} image{'' if matched == 1 else 's'} matched{carried_note}: {labelled:,} labelled, "
             f"{no_face:,} without a face, {failed:,} failed ({share(failed, matched)})"]
    counts = {name: count for name, count in summary["labels"].items() if name != NO_FACE}
    faces = sum(counts.values())
    per = "faces" if summary.get("faces") == FACES_ALL else "images"
    lines.append("  labels:  " + "   ".join(f"{name} {count:,} ({share(count, faces)})"
                                           for name, count in counts.items())
                 + f"   ({per}; --faces {summary.get('faces', FACES_NONE)})")
    skipped = summary.get("files_skipped") or {}
    if skipped:
        lines.append("  skipped: " + ", ".join(f"{count:,} {kind}" for kind, count in skipped.items())
                     + " (not labelled)")
    reasons = list(summary["errors_by_reason"].items())
    shown = len(reasons) if len(reasons) == SUMMARY_ERROR_KINDS + 1 else SUMMARY_ERROR_KINDS  # never "1 more kind"
    for reason, count in reasons[:shown]:
        lines.append(f"  failed:  {count:,} x {reason}")
    if len(reasons) > shown:
        more = len(reasons) - shown
        lines.append(f"  failed:  ... {more} more kind{'s' if more > 1 else ''} of error in {ERRORS_FILE}")
    seconds = summary["wall_seconds"]
    lines.append(f"  time:    {seconds:.1f} s, {matched / seconds if seconds else 0:.1f} images/s")
    lines.append(f"  model:   {summary['model_version']}")
    lines.append("  outputs: " + ", ".join(FileSystems.join(summary["output"], name) for name in outputs or RUN_FILES))
    return "\n".join(lines)
