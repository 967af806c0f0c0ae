# alpolicy's fixtures for plugin tests: alpolicy_images, alpolicy_registry_with (see alpolicy.testing).
pytest_plugins = ["alpolicy.testing.pytest_plugin"]
