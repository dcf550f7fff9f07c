"""HTML for the run report: turns what `pipeline.report` collected into one self-contained page.

No template engine and no external file: inline CSS, an inline SVG histogram and data: URI thumbnails, so the
page opens the same from disk, an e-mail attachment or a bucket's public URL. Every piece of text that comes
from the run (paths, labels, error reasons) goes through `html.escape`.
"""

import dataclasses
import html
import math
from collections.abc import Sequence

# Bar colours per class, in the model's class order (happy, sad, ...); labels outside the model's classes are grey.
CLASS_COLOURS: tuple[str, ...] = ("#e09a1a", "#3d6fb0", "#5c9e3b", "#9c4f96", "#c0504d")
OTHER_COLOUR: str = "#9a9a9a"
# On-screen size of a thumbnail: the 48x48 face enlarged 2x, pixel for pixel.
THUMBNAIL_DISPLAY_PX: int = 96
# Histogram drawing area (SVG user units) and its margins for the axis labels.
CHART_WIDTH, CHART_HEIGHT = 720, 240
CHART_LEFT, CHART_RIGHT, CHART_TOP, CHART_BOTTOM = 56, 12, 12, 36
X_TICKS: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
Y_GRIDLINES: int = 4
# Axis maxima are rounded up to 1, 2 or 5 times a power of ten, so gridlines fall on round numbers.
NICE_STEPS: tuple[int, ...] = (1, 2, 5, 10)
PROBABILITY_DIGITS: int = 3
# summary.json's "faces" value of a run with one row per face (pipeline.run --faces all).
FACES_ALL_MODE: str = "all"

STYLE: str = """
:root { --ink: #1f2328; --muted: #5b636d; --line: #d8dde3; --card: #ffffff; --page: #f4f6f8; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--page); color: var(--ink);
       font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 20px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 0 0 4px; }
.sub, .note { color: var(--muted); margin: 0 0 12px; }
.sub code { word-break: break-all; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 16px 18px;
          margin: 16px 0; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 8px 0 0; }
dl.meta dt { color: var(--muted); }
dl.meta dd { margin: 0; word-break: break-all; }
table { border-collapse: collapse; }
th, td { text-align: left; padding: 4px 14px 4px 0; border-bottom: 1px solid var(--line); vertical-align: top; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.swatch { display: inline-block; width: 11px; height: 11px; border-radius: 2px; margin-right: 6px;
          vertical-align: -1px; }
.legend { color: var(--muted); font-size: 13px; margin: 4px 0 0; }
.legend span { margin-right: 14px; }
svg text { font: 11px system-ui, sans-serif; fill: var(--muted); }
svg .grid { stroke: var(--line); }
.tiles { display: grid; grid-template-columns: repeat(auto-fill, minmax(112px, 1fr)); gap: 10px; }
figure.tile { margin: 0; text-align: center; min-width: 0; }
figure.tile img, figure.tile .placeholder { width: 96px; height: 96px; display: block; margin: 0 auto;
  border-radius: 4px; image-rendering: pixelated; background: #000; }
figure.tile .placeholder { background: repeating-linear-gradient(45deg, #eceff2 0 8px, #e2e6ea 8px 16px);
  color: var(--muted); font-size: 11px; padding: 30px 4px 0; overflow: hidden; }
figcaption { font-size: 12px; margin-top: 3px; }
figcaption .name { display: block; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
figcaption .p { color: var(--muted); font-variant-numeric: tabular-nums; }
table.errors { width: 100%; font-size: 13px; }
table.errors td.path { word-break: break-all; width: 55%; }
.empty { color: var(--muted); font-style: italic; }
footer { color: var(--muted); font-size: 13px; }
"""


@dataclasses.dataclass(frozen=True)
class Tile:
    """One face in a grid: a thumbnail data: URI, or None and the reason there is none."""

    path: str
    label: str
    probabilities: tuple[float, ...]
    uri: str | None
    problem: str | None = None


@dataclasses.dataclass(frozen=True)
class Grid:
    key: str
    title: str
    note: str
    tiles: tuple[Tile, ...]


@dataclasses.dataclass(frozen=True)
class ReportView:
    """Everything the page shows; built by `pipeline.report` from one pass over the run's files."""

    run_dir: str
    summary: dict | None
    class_names: tuple[str, ...]
    label_counts: dict[str, int]
    labelled: int
    # histogram[bin][i]: images in that bin labelled class_names[i]; the last slot counts any other label.
    histogram: tuple[tuple[int, ...], ...]
    grids: tuple[Grid, ...]
    errors: tuple[tuple[str, str], ...]
    errors_total: int
    unreadable_rows: int
    generated_at: str
    errors_file_missing: bool = False  # no errors.csv beside labels.csv (copied without it, or removed)


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def colour(index: int, class_count: int) -> str:
    return CLASS_COLOURS[index % len(CLASS_COLOURS)] if index < class_count else OTHER_COLOUR


def percent(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f}%" if whole else "-"


def nice_ceiling(value: int) -> int:
    """The smallest 1, 2 or 5 x 10^n at or above value (at least 1): a round top for the count axis."""
    if value <= 1:
        return 1
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in NICE_STEPS if step * power >= value)


def render_report(view: ReportView) -> str:
    """The whole page as one string."""
    first = view.class_names[0] if view.class_names else "?"
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>facelabel report: {esc(view.run_dir)}</title>",
        f"<style>{STYLE}</style></head><body><main>",
        render_header(view),
        render_counts(view),
        render_histogram(view.histogram, view.class_names, first, row_unit(view)),
        *(render_grid(grid, view.class_names) for grid in view.grids),
        render_errors(view),
        f'<footer>Generated {esc(view.generated_at)} by <code>python -m pipeline.report</code>. Thumbnails are the '
        f"48x48 greyscale faces the model saw (found and aligned again with the job's own code; a face-sized image "
        f"as the model took it, whole or aligned), enlarged 2x."
        "</footer>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def render_header(view: ReportView) -> str:
    summary = view.summary or {}
    facts = [("model", summary.get("model_version")), ("input", summary.get("input")),
             ("started", summary.get("started_at")), ("finished", summary.get("finished_at")),
             ("wall time", f"{summary['wall_seconds']:,.1f} s" if "wall_seconds" in summary else None)]
    carried = summary.get("images_carried_over")
    if carried:
        facts.append(("carried over", f"{carried:,} rows unchanged since the previous run (--incremental)"))
    rows = "".join(f"<dt>{esc(name)}</dt><dd>{esc(value)}</dd>" for name, value in facts if value is not None)
    meta = f'<dl class="meta">{rows}</dl>' if rows else '<p class="note">No summary.json in this folder.</p>'
    return (f'<header><h1>facelabel run report</h1><p class="sub">Outputs in <code>{esc(view.run_dir)}</code></p>'
            f"{meta}</header>")


def row_unit(view: ReportView) -> str:
    """What a row of labels.csv stands for: "faces" with --faces all (a row per face), else "images"."""
    return "faces" if (view.summary or {}).get("faces") == FACES_ALL_MODE else "images"


def render_counts(view: ReportView) -> str:
    """Rows of labels.csv per label (one per image, or per face with --faces all), failures and the total."""
    summary = view.summary or {}
    unit = row_unit(view)
    per_face = unit == "faces"
    failed = view.errors_total
    # With a row per face, rows are not images: the run's own count of matched images is the total then.
    matched = summary.get("images_matched", view.labelled + failed) if per_face else view.labelled + failed
    names = list(view.class_names) + sorted(set(view.label_counts) - set(view.class_names))
    rows = []
    for index, name in enumerate(names):
        count = view.label_counts.get(name, 0)
        swatch = f'<span class="swatch" style="background:{colour(index, len(view.class_names))}"></span>'
        rows.append(f'<tr data-label="{esc(name)}" data-count="{count}"><td>{swatch}{esc(name)}</td>'
                    f'<td class="num">{count:,}</td>'
                    f'<td class="num">{percent(count, view.labelled)}</td></tr>')
    rows.append(f'<tr data-label="(failed)" data-count="{failed}"><td>failed (see errors below)</td>'
                f'<td class="num">{failed:,}</td>'
                f'<td class="num"></td></tr>')
    rows.append(f'<tr data-label="(matched)" data-count="{matched}"><th>images matched</th>'
                f'<th class="num">{matched:,}</th><th></th></tr>')
    unreadable = (f'<p class="note">{view.unreadable_rows:,} rows of labels.csv could not be read and are not '
                  f"counted.</p>" if view.unreadable_rows else "")
    note = (f"Share of the {view.labelled:,} rows of the labels: one per face found (--faces all), and one for "
            "each image without a face." if per_face else
            f"Share of the {view.labelled:,} images in the labels (labelled happy or sad, or without a face).")
    return ('<section id="counts"><h2>Labels</h2>'
            f'<p class="note">{esc(note)}</p>'
            f'<table><thead><tr><th>label</th><th class="num">{unit}</th><th class="num">share</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>{unreadable}</section>')


def counted(count: int, noun: str) -> str:
    """'1 face', '2 faces', '1,024 images': a count with its noun (singular), plural unless one."""
    return f"{count:,} {noun}" if count == 1 else f"{count:,} {noun}s"


def render_histogram(histogram: Sequence[Sequence[int]], class_names: tuple[str, ...], first: str,
                     unit: str = "images") -> str:
    """An SVG bar chart of p_<first class>, each bar stacked by the label its rows got; unit: what a row is
    ("images", or "faces" with --faces all), as the chart's text says."""
    totals = [sum(counts) for counts in histogram]
    title = f'<h2>Distribution of p_{esc(first)}</h2>'
    if not totals or not any(totals):
        return f'<section id="histogram">{title}<p class="empty">No labelled {unit}.</p></section>'
    # Gridlines at whole, round counts: a step of 1, 2 or 5 x 10^n, about Y_GRIDLINES of them up to the tallest bar.
    step = nice_ceiling(math.ceil(max(totals) / Y_GRIDLINES))
    lines = math.ceil(max(totals) / step)
    top = step * lines
    plot_w = CHART_WIDTH - CHART_LEFT - CHART_RIGHT
    plot_h = CHART_HEIGHT - CHART_TOP - CHART_BOTTOM
    bar_w = plot_w / len(histogram)
    y_of = lambda count: CHART_TOP + plot_h * (1 - count / top)  # noqa: E731
    shapes = []
    for line in range(lines + 1):
        value = step * line
        y = y_of(value)
        shapes.append(f'<line class="grid" x1="{CHART_LEFT}" x2="{CHART_WIDTH - CHART_RIGHT}" y1="{y:.1f}" '
                      f'y2="{y:.1f}"/><text x="{CHART_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
                      f"{value:,.0f}</text>")
    for tick in X_TICKS:
        x = CHART_LEFT + plot_w * tick
        shapes.append(f'<text x="{x:.1f}" y="{CHART_HEIGHT - CHART_BOTTOM + 16}" text-anchor="middle">{tick:g}'
                      "</text>")
    shapes.append(f'<text x="{CHART_LEFT + plot_w / 2:.1f}" y="{CHART_HEIGHT - 4}" text-anchor="middle">'
                  f"p_{esc(first)}</text>")
    for index, counts in enumerate(histogram):
        low, high = index / len(histogram), (index + 1) / len(histogram)
        detail = ", ".join(f"{esc(name)} {count:,}" for name, count in zip(class_names, counts) if count)
        other = counts[len(class_names):] if len(counts) > len(class_names) else ()
        if sum(other):
            detail += f", other {sum(other):,}"
        bars, stacked = [], 0
        for slot, count in enumerate(counts):
            if not count:
                continue
            y0, y1 = y_of(stacked), y_of(stacked + count)
            bars.append(f'<rect x="{CHART_LEFT + index * bar_w + 1:.1f}" y="{y1:.1f}" width="{bar_w - 2:.1f}" '
                        f'height="{y0 - y1:.2f}" fill="{colour(slot, len(class_names))}"/>')
            stacked += count
        shapes.append(f'<g class="bin" data-count="{totals[index]}"><title>p_{esc(first)} {low:.2f} to {high:.2f}: '
                      f'{counted(totals[index], unit[:-1])} ({detail or "none"})</title>'
                      f'{"".join(bars)}</g>')
    legend = "".join(f'<span><span class="swatch" style="background:{colour(i, len(class_names))}"></span>'
                     f"labelled {esc(name)}</span>" for i, name in enumerate(class_names))
    return (f'<section id="histogram">{title}<p class="note">{unit.capitalize()} per bin of width '
            f"{1 / len(histogram):g}, coloured by the label they got; hover a bar for its counts.</p>"
            f'<svg viewBox="0 0 {CHART_WIDTH} {CHART_HEIGHT}" width="100%" role="img" '
            f'aria-label="histogram of p_{esc(first)}">{"".join(shapes)}</svg><p class="legend">{legend}</p>'
            "</section>")


def render_tile(tile: Tile, class_names: tuple[str, ...]) -> str:
    """A face with its file name, its label and that label's probability (all probabilities on hover)."""
    name = tile.path.rstrip("/").rsplit("/", 1)[-1] or tile.path
    shown = class_names.index(tile.label) if tile.label in class_names else len(class_names)
    probability = f" {tile.probabilities[shown]:.{PROBABILITY_DIGITS}f}" if shown < len(class_names) else ""
    all_probabilities = ", ".join(f"p_{n} {p:.{PROBABILITY_DIGITS}f}" for n, p in zip(class_names, tile.probabilities))
    described = f"{tile.label}: {all_probabilities}" if all_probabilities else tile.label  # no_face: none
    if tile.uri:
        picture = (f'<img src="{tile.uri}" width="{THUMBNAIL_DISPLAY_PX}" height="{THUMBNAIL_DISPLAY_PX}" '
                   f'alt="{esc(name)}">')
        hover = f"{tile.path}\n{described}"
    else:
        picture = (f'<div class="placeholder" role="img" aria-label="no thumbnail: {esc(tile.problem)}">'
                   "no thumbnail</div>")
        hover = f"{tile.path}\n{described}\n(no thumbnail: {tile.problem})"
    label = f'<b style="color:{colour(shown, len(class_names))}">{esc(tile.label)}</b>'
    return (f'<figure class="tile" title="{esc(hover)}" data-path="{esc(tile.path)}" data-label="{esc(tile.label)}">'
            f'{picture}<figcaption><span class="name">{esc(name)}</span><span class="p">{label}{probability}'
            "</span></figcaption></figure>")


def render_grid(grid: Grid, class_names: tuple[str, ...]) -> str:
    tiles = "".join(render_tile(tile, class_names) for tile in grid.tiles)
    body = f'<div class="tiles">{tiles}</div>' if tiles else '<p class="empty">No faces.</p>'
    return (f'<section class="faces" id="grid-{esc(grid.key)}"><h2>{esc(grid.title)}</h2>'
            f'<p class="note">{esc(grid.note)}</p>{body}</section>')


def render_errors(view: ReportView) -> str:
    """The first errors as a table, a note of how many more, and the counts by reason from summary.json."""
    if view.errors_file_missing:
        failed = (view.summary or {}).get("images_failed")
        counted = f": summary.json counts {failed:,} failed" if isinstance(failed, int) else ""
        return ('<section id="errors"><h2>Errors</h2><p class="empty" id="errors-missing">errors.csv is not in '
                f"this folder{esc(counted)}; the failed images cannot be listed.</p></section>")
    title = f"<h2>Errors ({view.errors_total:,})</h2>"
    if not view.errors_total:
        return f'<section id="errors">{title}<p class="empty">No image failed.</p></section>'
    reasons = (view.summary or {}).get("errors_by_reason") or {}
    by_reason = ("<table><thead><tr><th>reason</th><th class=\"num\">images</th></tr></thead><tbody>"
                 + "".join(f'<tr><td>{esc(reason)}</td><td class="num">{count:,}</td></tr>'
                           for reason, count in reasons.items())
                 + "</tbody></table><br>") if reasons else ""
    more = view.errors_total - len(view.errors)
    note = (f'<p class="note" id="errors-more">Showing the first {len(view.errors):,}; {more:,} more are in '
            "errors.csv.</p>" if more > 0 else "")
    rows = "".join(f'<tr><td class="path">{esc(path)}</td><td>{esc(error)}</td></tr>' for path, error in view.errors)
    return (f'<section id="errors">{title}{by_reason}<table class="errors"><thead><tr><th>path</th><th>error</th>'
            f"</tr></thead><tbody>{rows}</tbody></table>{note}</section>")
