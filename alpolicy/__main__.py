"""``python -m alpolicy`` is the ``alpolicy`` command."""

import sys

from .cli import main

sys.exit(main())
