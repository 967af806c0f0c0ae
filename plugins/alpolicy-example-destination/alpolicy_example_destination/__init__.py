"""An example alpolicy plugin: the ``jsonl:`` destination, one JSON line per qualifying image."""
