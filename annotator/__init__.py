"""sam-annotator: the PySide6 application built on :mod:`sam_core`."""

__version__ = "0.1.0"
