"""A picklable fetcher for the tests (imported by name on the Dask workers): an image's local copy
is a copy of a frame; a frame named ``*_down_*`` is a service that is down (ServiceError)."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass

from alpolicy import ImageFile, ServiceError


@dataclass(frozen=True)
class CopyFrom:
    original: str

    def __call__(self, image: ImageFile) -> None:
        if "_down_" in image.origin:
            raise ServiceError(f"{image.origin}: the store is down (503)")
        temporary = f"{image.path}.part{os.getpid()}"
        shutil.copyfile(self.original, temporary)
        os.replace(temporary, image.path)


def remote_images(frames: list[str], cache: str, down: set[int]) -> list[ImageFile]:
    images = []
    for index, frame in enumerate(frames):
        name = f"frame_down_{index}.jpg" if index in down else f"frame_{index}.jpg"
        stat = os.stat(frame)
        images.append(ImageFile(os.path.join(cache, name), stat.st_size, stat.st_mtime_ns, origin=f"store://bucket/{name}",
                                version=f"v{stat.st_size}", fetcher=CopyFrom(frame)))
    return images
