import logging
import sys
import threading

from annotator.data import logs


def test_setup_logging_writes_rotating_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SAM_ANNOTATOR_LOG_DIR", str(tmp_path / "logs"))
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        path = logs.setup_logging(stderr=False)
        assert path == tmp_path / "logs" / logs.LOG_NAME
        logging.getLogger("sam_core.test").warning("hello from the test")
        for h in root.handlers:
            h.flush()
        assert "hello from the test" in path.read_text(encoding="utf-8")
        # a second call adds no second handler
        n = len(root.handlers)
        logs.setup_logging(stderr=False)
        assert len(root.handlers) == n
    finally:
        for h in list(root.handlers):
            if h not in before:
                root.removeHandler(h)
                h.close()


def test_unwritable_log_folder_falls_back_to_stderr(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SAM_ANNOTATOR_LOG_DIR", str(blocker / "logs"))
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        assert logs.setup_logging(stderr=False) is None
        assert "cannot write the log file" in capsys.readouterr().err
    finally:
        for h in list(root.handlers):
            if h not in before:
                root.removeHandler(h)
                h.close()


def test_excepthook_reports_main_and_thread_errors(monkeypatch):
    seen = []
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    logs.install_excepthook(lambda summary, details: seen.append((summary, details)))
    try:
        raise ValueError("boom")
    except ValueError:
        sys.excepthook(*sys.exc_info())
    t = threading.Thread(target=lambda: 1 / 0)
    t.start()
    t.join()
    assert seen[0][0] == "ValueError: boom" and "Traceback" in seen[0][1]
    assert seen[1][0].startswith("ZeroDivisionError")
