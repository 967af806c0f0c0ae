"""JSON Schemas shipped with alpolicy (policy envelope and one file per built-in rule).

This folder is installed as the package ``alpolicy.schemas`` so the schemas are found with
``importlib.resources`` both from a wheel and from an editable checkout.
"""
