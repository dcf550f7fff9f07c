"""The names of the files a labelling run writes into its output folder (one place for every module)."""

LABELS_FILE: str = "labels.csv"
ERRORS_FILE: str = "errors.csv"
SUMMARY_FILE: str = "summary.json"
REPORT_FILE: str = "report.html"
# The three files every run writes, moved into place together when the run succeeds.
RUN_FILES: tuple[str, ...] = (LABELS_FILE, ERRORS_FILE, SUMMARY_FILE)
