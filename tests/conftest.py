"""Shared fixtures.

* Qt runs offscreen.
* ``mobilesam_checkpoint``: the real MobileSAM weights, fetched once into the
  test cache (``SAM_ANNOTATOR_CACHE``, else the user cache folder) through
  :func:`sam_core.ensure_checkpoint`, and verified by SHA-256.
* ``photo``: real photos from scikit-image.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# every save in the tests also serialises the document afresh and fails if a reused line differs (a record
# changed in place behind the save cache's back: see annotator.data.savecache)
os.environ.setdefault("SAM_ANNOTATOR_VERIFY_SAVES", "1")

import numpy as np
import pytest

# Qt fixtures (QThread/QTimer leak checks, window factories) live in tests/qt_fixtures.py.
pytest_plugins = ["qt_fixtures"]


@pytest.fixture(autouse=True)
def _our_loggers_enabled():
    """Keep our loggers on: a library that configures logging with ``dictConfig`` (Ray does, when it starts)
    disables every logger that already exists, and tests that check what we log would then see nothing."""
    import logging

    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and name.split(".")[0] in ("annotator", "sam_core"):
            logger.disabled = False
    yield


@pytest.fixture(autouse=True)
def _private_settings(tmp_path, monkeypatch):
    """Every test gets its own settings file, logs folder: never the user's."""
    monkeypatch.setenv("SAM_ANNOTATOR_SETTINGS", str(tmp_path / "settings.ini"))
    monkeypatch.setenv("SAM_ANNOTATOR_LOG_DIR", str(tmp_path / "logs"))


def pytest_collection_modifyitems(config, items):
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except Exception:  # pragma: no cover
        has_cuda = False
    if not has_cuda:
        skip = pytest.mark.skip(reason="needs a CUDA GPU")
        for item in items:
            if "gpu" in item.keywords:
                item.add_marker(skip)


@pytest.fixture(scope="session")
def mobilesam_checkpoint():
    """Path to the verified MobileSAM checkpoint (downloads on first use)."""
    from sam_core import ensure_checkpoint

    return ensure_checkpoint("vit_t")


@pytest.fixture(scope="session")
def mobilesam_model(mobilesam_checkpoint):
    from sam_core import load_model

    return load_model("vit_t", checkpoint=mobilesam_checkpoint, device="cpu")


def _photos():
    from skimage import data

    return {
        "astronaut": data.astronaut(),
        "coffee": data.coffee(),
        "chelsea": data.chelsea(),
    }


@pytest.fixture(scope="session")
def photos() -> dict[str, np.ndarray]:
    """Real RGB uint8 photos keyed by name."""
    return _photos()
