"""Local ONNX Runtime inference backend for alpolicy.

Runs YOLOv8/YOLO11 (``[batch, 4 + classes, anchors]``) and YOLOv5 (``[batch, anchors, 5 + classes]``)
ONNX exports on the CPU and turns their raw output into the Roboflow inference shape of their task:
boxes (:mod:`alpolicy_onnx.decode`), instance masks as polygons (:mod:`alpolicy_onnx.masks`),
keypoints and classes (:mod:`alpolicy_onnx.tasks`). A tiny demo detector for synthetic circles, squares and triangles
ships in ``alpolicy_onnx/models/demo-shapes.onnx`` together with the generator of the footage it was
trained for (:mod:`alpolicy_onnx.synthetic`), so the whole loop can be tried offline on a CPU.
"""
