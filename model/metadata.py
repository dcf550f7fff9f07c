"""Model metadata: what a SavedModel is, written beside it as `facelabel.json` and read back by the pipeline.

It records the class order of the probability vector, the input shape, the decision rule, what data the model was
trained on, its validation metrics, when it was made, and a version string that lands in every output row.
"""

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np

from model.contract import CLASS_NAMES, INPUT_SHAPE

METADATA_FILENAME: str = "facelabel.json"
METADATA_FORMAT: int = 1
# Decision rules: "threshold" picks `positive_class` when its probability >= threshold, else the other class
# (two-class models only); "argmax" picks the most probable class.
RULE_THRESHOLD: str = "threshold"
RULE_ARGMAX: str = "argmax"


def crop_framing(aligned_crops: bool) -> str:
    """How a model takes face-sized images (`ModelMetadata.aligned_crops`), in the words messages use."""
    return "aligned" if aligned_crops else "whole"


@dataclasses.dataclass(frozen=True)
class ModelMetadata:
    """Everything a consumer needs to know about one exported model."""

    model_version: str
    class_names: tuple[str, ...] = CLASS_NAMES
    input_shape: tuple[int, ...] = INPUT_SHAPE
    decision_rule: str = RULE_ARGMAX
    positive_class: str = CLASS_NAMES[0]
    threshold: float = 0.5
    temperature: float = 1.0
    trained_on: dict[str, Any] = dataclasses.field(default_factory=dict)
    validation_metrics: dict[str, Any] = dataclasses.field(default_factory=dict)
    created_at: str = ""
    training_config: dict[str, Any] = dataclasses.field(default_factory=dict)
    # The int8 copy beside the SavedModel (model.lite), if made: its file, and its figures on a split of the
    # training data next to the SavedModel's answers there (trainer.quantize --write).
    int8: dict[str, Any] = dataclasses.field(default_factory=dict)
    # How face-sized images (face crops, `model.align.is_face_thumbnail`) reach the network: False, taken whole, as
    # the network learned FER2013's crops; True, aligned like faces in photos when a face is found in them, because
    # the network was trained on crops found and aligned that way (`trainer.task --align-crops`).
    aligned_crops: bool = False
    format: int = METADATA_FORMAT

    def __post_init__(self) -> None:
        if not isinstance(self.aligned_crops, bool):  # "false" or 1 would be read as true or guessed at
            raise ValueError(f"aligned_crops must be true or false, got {self.aligned_crops!r}")
        if self.decision_rule not in (RULE_THRESHOLD, RULE_ARGMAX):
            raise ValueError(f"unknown decision rule {self.decision_rule!r}")
        if self.decision_rule == RULE_THRESHOLD:
            if len(self.class_names) != 2 or self.positive_class not in self.class_names:
                raise ValueError("the threshold rule needs two classes and a positive class among them")

    def decide(self, probabilities: np.ndarray) -> np.ndarray:
        """Class index chosen for each row of a [batch, classes] probability array."""
        probabilities = np.asarray(probabilities)
        if self.decision_rule == RULE_ARGMAX:
            return np.argmax(probabilities, axis=-1)
        positive = self.class_names.index(self.positive_class)
        negative = 1 - positive
        return np.where(probabilities[..., positive] >= self.threshold, positive, negative)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "ModelMetadata":
        """Parse metadata, refusing files from a newer format or missing the version string."""
        raw = json.loads(text)
        if not isinstance(raw, dict) or "model_version" not in raw:
            raise ValueError(f"{METADATA_FILENAME} has no model_version")
        if raw.get("format", METADATA_FORMAT) > METADATA_FORMAT:
            raise ValueError(f"{METADATA_FILENAME} format {raw['format']} is newer than this code understands")
        known = {field.name for field in dataclasses.fields(cls)}
        values = {key: value for key, value in raw.items() if key in known}
        for key in ("class_names", "input_shape"):
            if key in values:
                values[key] = tuple(values[key])
        return cls(**values)

    def write(self, model_dir: str | Path) -> Path:
        path = Path(model_dir) / METADATA_FILENAME
        path.write_text(self.to_json(), encoding="utf-8")
        return path

    @classmethod
    def read(cls, model_dir: str | Path) -> "ModelMetadata":
        return cls.from_json((Path(model_dir) / METADATA_FILENAME).read_text(encoding="utf-8"))
