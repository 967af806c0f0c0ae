"""alpolicy test suite."""
