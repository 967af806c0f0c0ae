"""Interchange formats: one module per format, each a pair of pure functions prediction ⇄ document.

Why here, one implementation each: the folder destination, the Label Studio destination, the
replay backend and the HTML report all read or write the same formats; a box converted in two
places drifts apart (a clip here, a rounding there). These modules do no I/O and know no
destination: they turn a :class:`~alpolicy.policy.prediction.Prediction` (Roboflow's convention:
boxes by their *centre* and size, in pixels) into a format's document and back.

* :mod:`.coco` -- COCO detection: ``bbox`` is the top-left corner and size, in pixels.
* :mod:`.yolo` -- Ultralytics txt labels: ``class cx cy w h``, normalised to 0..1.
* :mod:`.labelstudio` -- Label Studio tasks: rectangles by top-left corner and size, in percent.
* :mod:`.roboflow` -- Roboflow inference JSON, the predictions' own shape.
"""
