"""An example alpolicy plugin: one detection rule, ``aspect_ratio``, with its JSON Schema."""
