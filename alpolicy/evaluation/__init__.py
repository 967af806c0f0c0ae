"""Measuring a policy against ground truth (``alpolicy evaluate``): pure computation over a
journal's stored predictions and a COCO ground truth.

* :mod:`.matching` -- one image's errors (greedy same-class matching by confidence at IoU /
  mask IoU / OKS >= the threshold; misses, false positives, wrong-class pairs);
* :mod:`.ground_truth` -- the COCO ground truth, keyed by file name;
* :mod:`.evaluate` -- every policy's picks and the errors they capture, against random picks and
  the oracle (the evaluation document).

It reads the journal and compiles policies, so it sits beside :mod:`alpolicy.report` (which
draws its document) and below the CLI.
"""

from .evaluate import evaluate
from .ground_truth import GroundTruth, read_ground_truth
from .matching import ImageErrors, match

__all__ = ["GroundTruth", "ImageErrors", "evaluate", "match", "read_ground_truth"]
