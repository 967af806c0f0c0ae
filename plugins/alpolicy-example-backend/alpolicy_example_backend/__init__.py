"""An example alpolicy plugin: the ``csv:`` inference backend, predictions read from a CSV file."""
