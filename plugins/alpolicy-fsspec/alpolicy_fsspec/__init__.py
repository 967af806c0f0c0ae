"""Object storage sources for alpolicy through fsspec (``alpolicy run s3://bucket/prefix``).

:mod:`alpolicy_fsspec.plugin` registers the schemes (cheaply: nothing heavy is imported until a
URL of one is run); :mod:`alpolicy_fsspec.source` lists and fetches.
"""

__version__ = "0.1.0"
