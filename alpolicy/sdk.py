"""``alpolicy.active_learning``: a drop-in for the Roboflow SDK's ``Workspace.active_learning``.

Same parameters, defaults and return value (a list of ``{"image": path, "predictions": [...]}``
for every image inferred, in the folder's order), and for the same server and folder the same images uploaded -- but
each *with* its prediction as a pre-label, concurrently, resumable, never twice, and with a
summary of why. Extra keyword arguments reach :class:`RunOptions`.

One deliberate difference: images are processed (and returned) in natural order
(:func:`alpolicy.io.images.natural_key`), not in the SDK's ``glob`` order, which is the file
system's and differs between machines (hash order on ext4): the same folder makes the same
decisions everywhere.

Symbolic links are followed, as the SDK's ``glob`` follows them, wherever they lead (the same
images as the SDK, links out of the folder included); a broken one is skipped (the SDK would
fail on it). ``alpolicy.run()`` and ``alpolicy run`` instead skip links leaving the folder
unless asked (``follow_symlinks``, ``--follow-symlinks``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from typing import Any, Iterable, Iterator, Mapping

from .errors import UsageError
from .io.images import DEFAULT_EXTENSIONS, ImageFile, iter_folder
from .policy.engine import Policy
from .policy.prediction import Prediction
from .runtime.pipeline import RunOptions, options_with, run


def active_learning(
    raw_data_location: Any = "",
    raw_data_extension: str = "",
    inference_endpoint: list[Any] | tuple[Any, ...] | None = None,
    upload_destination: str = "",
    conditionals: Mapping[str, Any] | None = None,
    use_localhost: bool = False,
    local_server: str = "http://localhost:9001/",
    *,
    api_key: str | None = None,
    **options: Any,
) -> Any:
    """Infer every image of ``raw_data_location`` matching ``raw_data_extension`` with
    ``inference_endpoint=[project, version]`` and upload those the SDK's ``conditionals`` select to
    the Roboflow project ``upload_destination``, each with its prediction.

    Options (keyword only), the same as :func:`alpolicy.run`'s: ``concurrency``, ``journal``
    (path; ``None`` keeps it in memory), ``wait_for_journal`` (seconds to wait for another run writing it; default: stop at once),
    ``dry_run``, ``decisions_log``, ``progress``, ``tags``,
    ``retry_for`` (seconds of deferred retries at the end, default 300; ``0``: none),
    ``confidence``, ``overlap`` (percent, SDK defaults 40 and 30), ``split``, ``batch``,
    ``api_url``, ``timeout``, ``attempts``, ``retry_backoff``...
    """
    if not inference_endpoint or len(inference_endpoint) != 2:
        raise UsageError("inference_endpoint should be [project, version], e.g. ['vehicles', 3]")
    if not upload_destination and not options.get("dry_run"):
        raise UsageError("upload_destination should name the Roboflow project to upload to")
    project, version = inference_endpoint
    policy = Policy.from_conditionals(dict(conditionals or {}))
    destination = f"roboflow:{upload_destination}" if upload_destination else None
    run_options = _run_options(api_key, use_localhost, local_server, options, destination)

    #: (position in the input, result): an image re-inferred in a deferred round reaches
    #: ``collect`` at the end of the run, but the list returned follows the input's order.
    results: list[tuple[int, dict[str, Any]]] = []
    positions: dict[str, int] = {}

    def numbered(images: Iterable[ImageFile]) -> Iterator[ImageFile]:
        for position, image in enumerate(images):
            positions.setdefault(image.path, position)
            yield image

    def collect(image: ImageFile, prediction: Prediction) -> None:
        results.append((positions[image.path], {"image": image.path, "predictions": list(prediction.detections)}))

    frame_file = None
    if hasattr(raw_data_location, "shape"):  # a cv2 / numpy frame, as the SDK also accepts
        frame_file = _save_frame(raw_data_location)
        images: Iterable[ImageFile] = (ImageFile.from_path(path) for path in [frame_file])  # read inside the try
    else:
        images = _sdk_files(str(raw_data_location), raw_data_extension)
    try:
        report = run(
            numbered(images), policy, model=f"roboflow:{project}/{version}",
            destination=destination, options=run_options, on_result=collect,
        )
    finally:
        if frame_file is not None:
            os.unlink(frame_file)
    ordered = [result for _, result in sorted(results, key=lambda entry: entry[0])]
    if run_options.progress or (run_options.progress is None and sys.stderr.isatty()):
        print(report.summary(), file=sys.stderr)
    if frame_file is not None:
        return ordered[-1]["predictions"] if ordered else []
    return ordered


def _run_options(api_key: str | None, use_localhost: bool, local_server: str, options: dict[str, Any],
                 destination: str | None) -> RunOptions:
    """The SDK's arguments as :func:`alpolicy.run`'s keywords: one mapping, one set of checks."""
    keywords = dict(options)
    if api_key is not None:
        keywords["api_key"] = api_key
    if use_localhost:
        keywords["inference_url"] = local_server
    return options_with(None, keywords, destination, caller="active_learning()")


def _sdk_files(folder: str, extension: str) -> Any:
    """The files of the SDK's ``glob(folder + "/*" + extension)``: this folder only, no hidden
    files, a case-sensitive suffix; in natural order instead of glob's. An empty extension takes
    every common image type instead of every file (the SDK would send non-images to the model
    and crash). Links are followed, as glob does."""
    if not os.path.isdir(folder):
        raise UsageError(f"raw_data_location {folder!r} is not a folder")
    if extension:
        return iter_folder(folder, (extension,), case_sensitive=True, follow_symlinks=True)
    return iter_folder(folder, DEFAULT_EXTENSIONS, follow_symlinks=True)


def _save_frame(frame: Any) -> str:
    from PIL import Image

    handle, path = tempfile.mkstemp(prefix="alpolicy-frame-", suffix=".png")
    os.close(handle)
    Image.fromarray(frame).save(path)
    return path
