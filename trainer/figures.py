"""Evaluation evidence to look at: one PNG of plots and one self-contained HTML page of the worst mistakes.

- `evaluation.png`: confusion matrix, ROC curve (first class positive, with the operating point) and reliability
  diagram (top-label confidence vs accuracy, binned as the reported ECE).
- `mistakes.html`: for each kind of mistake (e.g. true sad called happy), the most confident ones, each as the
  48x48 face the model saw (a data-URI PNG, enlarged with `image-rendering: pixelated`), its `p_<first class>`
  and file name. The page embeds the plots too and needs nothing else to open.

Drawn with matplotlib's Agg canvas (no display, no pyplot state). Files go anywhere `trainer.files` writes,
local or gs://.
"""

import base64
import html
import io
import posixpath
from collections.abc import Sequence

import numpy as np
from apache_beam.io.filesystems import FileSystems
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from trainer import metrics
from trainer.files import write_bytes, write_text

PNG_FILENAME: str = "evaluation.png"
HTML_FILENAME: str = "mistakes.html"
TOP_MISTAKES: int = 24
THUMBNAIL_SCALE: int = 3  # 48x48 faces shown at 144x144
FIGURE_SIZE: tuple[float, float] = (16.0, 5.2)  # inches; at FIGURE_DPI: 1600x520 pixels
FIGURE_DPI: int = 100


def plot_evaluation(labels: np.ndarray, probabilities: np.ndarray, predicted: np.ndarray,
                    class_names: Sequence[str], title: str = "", rule: str = "") -> bytes:
    """PNG bytes of three panels: confusion matrix, ROC curve and reliability diagram."""
    labels, probabilities, predicted = np.asarray(labels), np.asarray(probabilities), np.asarray(predicted)
    figure = Figure(figsize=FIGURE_SIZE, dpi=FIGURE_DPI, layout="constrained")
    FigureCanvasAgg(figure)
    confusion_axes, roc_axes, reliability_axes = figure.subplots(1, 3)
    _plot_confusion(confusion_axes, labels, predicted, class_names, rule)
    _plot_roc(roc_axes, labels, probabilities, predicted, class_names)
    _plot_reliability(reliability_axes, labels, probabilities)
    if title:
        figure.suptitle(title)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=FIGURE_DPI)
    return buffer.getvalue()


def _plot_confusion(axes, labels: np.ndarray, predicted: np.ndarray, class_names: Sequence[str], rule: str) -> None:
    n = len(class_names)
    counts = np.zeros((n, n), dtype=np.int64)
    np.add.at(counts, (labels, predicted), 1)
    row_share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    axes.imshow(row_share, cmap="Blues", vmin=0.0, vmax=1.0)
    for true in range(n):
        for guess in range(n):
            colour = "white" if row_share[true, guess] > 0.5 else "black"
            axes.text(guess, true, f"{counts[true, guess]:,}\n{row_share[true, guess]:.1%} of true",
                      ha="center", va="center", color=colour, fontsize=11)
    axes.set_xticks(range(n), labels=class_names)
    axes.set_yticks(range(n), labels=class_names)
    axes.set_xlabel("predicted" + (f"  ({rule})" if rule else ""))
    axes.set_ylabel("true")
    accuracy = np.trace(counts) / max(counts.sum(), 1)
    axes.set_title(f"Confusion matrix: accuracy {accuracy:.1%} of {counts.sum():,}")


def _plot_roc(axes, labels: np.ndarray, probabilities: np.ndarray, predicted: np.ndarray,
              class_names: Sequence[str]) -> None:
    positive = labels == 0
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="chance")
    if positive.any() and (~positive).any():
        fpr, tpr = metrics.roc_curve(positive, probabilities[:, 0])
        auc = metrics.roc_auc(positive, probabilities[:, 0])
        axes.plot(fpr, tpr, linewidth=2, label=f"ROC, AUC {auc:.3f}")
        chosen = predicted == 0
        axes.plot([chosen[~positive].mean()], [chosen[positive].mean()], "o", color="crimson",
                  label="decision threshold")
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.01)
    axes.set_aspect("equal")
    axes.set_xlabel(f"false {class_names[0]} rate (true {', '.join(class_names[1:])} called {class_names[0]})")
    axes.set_ylabel(f"true {class_names[0]} rate ({class_names[0]} recall)")
    axes.set_title(f"ROC curve, {class_names[0]} as positive")
    axes.legend(loc="lower right")


def _plot_reliability(axes, labels: np.ndarray, probabilities: np.ndarray) -> None:
    edges, confidence, accuracy, count = metrics.reliability_bins(labels, probabilities)
    filled = count > 0
    width = edges[1] - edges[0]
    axes.bar(edges[:-1][filled], accuracy[filled], width=width, align="edge", color="tab:blue", alpha=0.7,
             edgecolor="white", label="accuracy in bin")
    axes.plot(confidence[filled], accuracy[filled], "o", color="navy", markersize=4,
              label="accuracy at bin's mean confidence")
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1, label="perfect calibration")
    lowest = 1.0 / probabilities.shape[-1]  # top-label confidence is never below 1/classes
    axes.set_xlim(lowest - width, 1)
    axes.set_ylim(0, 1.01)
    axes.set_xlabel("confidence (probability of the predicted class)")
    axes.set_ylabel("accuracy")
    ece = metrics.expected_calibration_error(labels, probabilities) if len(labels) else float("nan")
    axes.set_title(f"Reliability: ECE {ece:.1%}")
    share = axes.twinx()
    share.stairs(count / max(count.sum(), 1), edges, color="darkorange", linewidth=1.5)
    share.set_ylabel("share of images in bin", color="darkorange")
    share.set_ylim(0, 1.01)
    axes.legend(loc="upper left")


def thumbnail_data_uri(image: np.ndarray) -> str:
    """A 48x48x1 float face (0..255) as a data:image/png;base64 URI."""
    pixels = np.clip(np.rint(np.asarray(image, dtype=np.float64)[..., 0]), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels, mode="L").save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def most_confident_mistakes(labels: np.ndarray, probabilities: np.ndarray, predicted: np.ndarray,
                            true: int, called: int, top: int = TOP_MISTAKES) -> np.ndarray:
    """Indices of images of class `true` predicted as `called`, most probable `called` first, at most `top`."""
    wrong = np.flatnonzero((np.asarray(labels) == true) & (np.asarray(predicted) == called))
    order = np.argsort(-np.asarray(probabilities)[wrong, called], kind="stable")
    return wrong[order[:top]]


_PAGE_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
.grid { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; width: 148px; font-size: 12px; }
figure img { width: 144px; height: 144px; image-rendering: pixelated; border: 2px solid #c33; }
figcaption { overflow-wrap: anywhere; }
.plots { max-width: 100%; }
"""


def mistakes_html(images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray, predicted: np.ndarray,
                  paths: Sequence[str], class_names: Sequence[str], title: str = "", rule: str = "",
                  top: int = TOP_MISTAKES, plots_png: bytes | None = None) -> str:
    """A self-contained HTML page: the `top` most confident mistakes of each kind, with optional plots on top."""
    score = f"p_{class_names[0]}"
    parts = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title or 'facelabel mistakes')}</title><style>{_PAGE_STYLE}</style></head><body>",
        f"<h1>{html.escape(title or 'facelabel mistakes')}</h1>",
        f"<p>{len(labels):,} images, {int((np.asarray(labels) != np.asarray(predicted)).sum()):,} mistakes"
        + (f"; decision: {html.escape(rule)}" if rule else "")
        + f". Faces as the model saw them (48x48, enlarged {THUMBNAIL_SCALE}x); most confident mistakes first.</p>",
    ]
    if plots_png:
        parts.append(f'<img class="plots" alt="confusion matrix, ROC curve and reliability diagram" '
                     f'src="data:image/png;base64,{base64.b64encode(plots_png).decode("ascii")}">')
    for true, true_name in enumerate(class_names):
        for called, called_name in enumerate(class_names):
            if called == true:
                continue
            chosen = most_confident_mistakes(labels, probabilities, predicted, true, called, top)
            total = int(((np.asarray(labels) == true) & (np.asarray(predicted) == called)).sum())
            parts.append(f'<h2 id="true-{html.escape(true_name)}-called-{html.escape(called_name)}">'
                         f"True {html.escape(true_name)} called {html.escape(called_name)}: "
                         f"{total:,} mistakes, {len(chosen)} shown</h2>")
            parts.append('<div class="grid">')
            for index in chosen:
                path = str(paths[index])
                name = posixpath.basename(path.replace("\\", "/"))
                parts.append(
                    f'<figure title="{html.escape(path)}"><img alt="{html.escape(name)}" '
                    f'src="{thumbnail_data_uri(images[index])}"><figcaption>'
                    f"{score} {probabilities[index, 0]:.3f}<br>{html.escape(name)}</figcaption></figure>")
            parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_figures(folder: str, images: np.ndarray, labels: np.ndarray, probabilities: np.ndarray,
                  predicted: np.ndarray, paths: Sequence[str], class_names: Sequence[str], title: str = "",
                  rule: str = "", top: int = TOP_MISTAKES) -> list[str]:
    """Write `evaluation.png` and `mistakes.html` into folder (local or gs://); returns their paths."""
    png = plot_evaluation(labels, probabilities, predicted, class_names, title, rule)
    png_path = FileSystems.join(folder, PNG_FILENAME)
    html_path = FileSystems.join(folder, HTML_FILENAME)
    write_bytes(png_path, png)
    write_text(html_path, mistakes_html(images, labels, probabilities, predicted, paths, class_names, title, rule,
                                        top, plots_png=png))
    return [png_path, html_path]
