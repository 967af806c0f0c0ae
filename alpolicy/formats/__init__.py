"""Interchange formats: one module per format, each a pair of pure functions prediction ⇄ document.

Why here, one implementation each: the folder destination, the Label Studio destination, the
replay backend and the HTML report all read or write the same formats; a box converted in two
places drifts apart (a clip here, a rounding there). These modules do no I/O and know no
destination: they turn a :class:`~alpolicy.policy.prediction.Prediction` (Roboflow's convention:
boxes by their *centre* and size, in pixels) into a format's document and back.

Every task type (:data:`alpolicy.policy.prediction.TASKS`) has its form in each format:

* :mod:`.coco` -- COCO: ``bbox`` is the top-left corner and size, in pixels; ``segmentation``
  polygons (or RLE) with their area; ``keypoints`` ``[x, y, v, ...]`` with the category's names.
* :mod:`.yolo` -- Ultralytics txt labels: ``class cx cy w h`` normalised to 0..1; YOLO-seg
  polygons, YOLO-pose keypoints and ``kpt_shape`` in ``data.yaml``.
* :mod:`.classification` -- a classifier's folders per class and the one-hot ``_classes.csv``.
* :mod:`.labelstudio` -- Label Studio tasks in percent: rectangles, polygons, keypoints linked to
  their box, choices; the labeling config of each task.
* :mod:`.roboflow` -- Roboflow inference JSON, the predictions' own shape; the annotation each
  task uploads; :func:`.roboflow.scaled`, the one rescaling of a prediction.
* :mod:`.shapes` -- the geometry they share: polygon clipping and area, RLE decoding, keypoint layout.
"""
