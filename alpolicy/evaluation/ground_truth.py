"""The ground truth an evaluation compares predictions with: a COCO dataset, read by the one COCO
reader (:func:`alpolicy.formats.coco.predictions`: boxes, polygons and keypoints) and keyed by
**file name** (the basename of each image's ``file_name``), because a journal stores paths and a
dataset exported from a labeling tool names its images by file, not by folder.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any, Mapping

from ..errors import UsageError
from ..formats import coco
from ..policy.prediction import Prediction, PredictionFormatError
from .matching import sigmas_for


@dataclass
class GroundTruth:
    """file name -> the truth as a checked :class:`Prediction` (confidence 1.0 each)."""

    images: dict[str, Prediction]
    #: class -> keypoint name -> OKS sigma (:func:`alpolicy.evaluation.matching.sigmas_for`).
    sigmas: dict[str, dict[str, float]] = field(default_factory=dict)


def file_key(path: str) -> str:
    """What a stored image and a ground-truth entry are matched by: the file name (either separator)."""
    return os.path.basename(path.replace("\\", "/"))


def _load(path: str | os.PathLike[str]) -> Any:
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise UsageError(f"no ground truth at {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"cannot read the ground truth {path}: {error}") from None
    except json.JSONDecodeError as error:
        raise UsageError(f"the ground truth {path} is not JSON: {error.msg} at line {error.lineno}") from None


def _sigmas(document: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    names = coco.categories(document)
    skeletons = coco.keypoint_names(document) or {}
    return {names[key]: sigmas_for(skeleton) for key, skeleton in skeletons.items() if key in names}


def read_ground_truth(path: str | os.PathLike[str]) -> GroundTruth:
    """Read a COCO ground truth; a file that is not one, holds no image or names one file twice is
    one :class:`UsageError` line."""
    document = _load(path)
    if not isinstance(document, dict) or not isinstance(document.get("images"), list):
        raise UsageError(f"the ground truth {path} is not a COCO dataset (no \"images\" list)")
    if not document["images"]:
        raise UsageError(f"the ground truth {path} has no images")
    seen: dict[str, str] = {}
    for entry in document["images"]:
        name = entry.get("file_name") if isinstance(entry, dict) else None
        if isinstance(name, str):
            key = file_key(name)
            if key in seen:
                raise UsageError(f"the ground truth {path} names the file {key!r} twice "
                                 f"({seen[key]!r} and {name!r}): images are matched by file name")
            seen[key] = name
    try:
        truths = coco.predictions(document)
        sigmas = _sigmas(document)
    except (coco.CocoFormatError, PredictionFormatError) as error:
        raise UsageError(f"the ground truth {path} is not valid COCO: {error}") from None
    return GroundTruth({file_key(name): truth for name, truth in truths.items()}, sigmas)
