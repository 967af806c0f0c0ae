"""A real Label Studio server for the tests, run from its own virtualenv (``make labelstudio``).

Label Studio is a Django application of about 1 GB of dependencies (Django, pandas, boto3...)
whose pins would fight the project's own, so it lives in ``.venv-labelstudio`` at the repository
root, created by ``make labelstudio`` (``make test`` depends on it), never in ``.venv``.

:class:`LabelStudio` starts ``label-studio start`` on a free loopback port with a throw-away data
folder (SQLite), a known admin user and a known legacy API token, waits for ``/health``, and
stops the whole process group afterwards. The server's output goes to ``<data dir>/server.log``
(its path is in every error message).

Pinned and verified: label-studio 1.23.2 (see the Makefile).

:func:`shared` is the one server of a test session (every test file that needs Label Studio uses
it: a start costs a minute on a busy machine). With ``ALPOLICY_LABELSTUDIO_URL`` set it is a
server already running (``python -m tests.servers.labelstudio`` starts one and prints its URL),
for a quick edit-and-rerun loop.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(os.environ.get("ALPOLICY_LABELSTUDIO_VENV", ROOT / ".venv-labelstudio"))
EXECUTABLE = VENV / "bin" / "label-studio"
USERNAME = "alpolicy@example.com"
PASSWORD = "alpolicy-test-password-7"
#: The admin's legacy token (``Authorization: Token ...``); 40 hex-ish characters like LS's own.
LEGACY_TOKEN = "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678"
START_TIMEOUT = 240.0
#: A Label Studio already running (with the token and user above) to use instead of starting one.
URL_ENV = "ALPOLICY_LABELSTUDIO_URL"


class LabelStudioMissing(RuntimeError):
    pass


def free_port() -> int:
    """A port nobody listens on now (Label Studio silently moves to the next port when busy)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LabelStudio:
    """``with LabelStudio() as ls: ls.url, ls.api(...)``; ``ls.startup_seconds`` is the cold start."""

    def __init__(self, *, data_dir: str | None = None, port: int | None = None) -> None:
        if not EXECUTABLE.exists():
            raise LabelStudioMissing(
                f"Label Studio is not installed in {VENV}: run `make test` (or `make labelstudio`) first"
            )
        self._own_dir = data_dir is None
        self.data_dir = Path(data_dir or tempfile.mkdtemp(prefix="alpolicy-ls-"))
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = LEGACY_TOKEN
        self.log_path = self.data_dir / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.startup_seconds: float | None = None
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.headers["Authorization"] = f"Token {self.token}"
        self._pat: str | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def environment(self) -> dict[str, str]:
        env = {key: value for key, value in os.environ.items() if not key.startswith(("LABEL_STUDIO_", "DJANGO_"))}
        env.update({
            "DJANGO_DB": "sqlite",
            "LABEL_STUDIO_BASE_DATA_DIR": str(self.data_dir),
            "LABEL_STUDIO_USERNAME": USERNAME,
            "LABEL_STUDIO_PASSWORD": PASSWORD,
            "LABEL_STUDIO_USER_TOKEN": LEGACY_TOKEN,
            "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "SENTRY_DSN": "",
            "FRONTEND_SENTRY_DSN": "",
            "LATEST_VERSION_CHECK": "false",
            "COLLECT_ANALYTICS": "false",
            "LOCAL_FILES_SERVING_ENABLED": "false",
            "fflag_feat_utc_210_prediction_validation_15082025": "true",
            "PYTHONUNBUFFERED": "1",
        })
        env.pop("VIRTUAL_ENV", None)
        env["PATH"] = f"{VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return env

    def start(self) -> "LabelStudio":
        started = time.monotonic()
        log = open(self.log_path, "wb")
        try:
            self.process = subprocess.Popen(
                [str(EXECUTABLE), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(self.port)],
                cwd=self.data_dir, env=self.environment(), stdin=subprocess.DEVNULL, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True,
            )
        finally:
            log.close()
        try:
            self._wait_until_healthy(started)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - started
        return self

    def _wait_until_healthy(self, started: float) -> None:
        assert self.process is not None
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"Label Studio exited with status {self.process.returncode}; see {self.log_path}:\n{self.log_tail()}")
            with contextlib.suppress(requests.RequestException):
                health = self.session.get(f"{self.url}/health", timeout=2)
                if health.status_code == 200:
                    # /health answers before the user and token exist: wait for the API to accept the token.
                    if self.session.get(f"{self.url}/api/current-user/whoami", timeout=5).status_code == 200:
                        return
            if time.monotonic() - started > START_TIMEOUT:
                raise RuntimeError(f"Label Studio did not become healthy within {START_TIMEOUT:g} s; see {self.log_path}:\n{self.log_tail()}")
            time.sleep(0.5)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        """SIGTERM to the server's process group (it was started in its own session), then SIGKILL."""
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=15)
        self.session.close()

    def cleanup(self) -> None:
        if self._own_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> "LabelStudio":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- API helpers for the tests (plain requests, independent of alpolicy's client) ---------

    def api(self, method: str, path: str, *, expect: int | tuple[int, ...] = (200, 201, 204), **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", 60)
        response = self.session.request(method, f"{self.url}{path}", **kwargs)
        expected = (expect,) if isinstance(expect, int) else expect
        if response.status_code not in expected:
            raise AssertionError(f"{method} {path} -> HTTP {response.status_code}: {response.text[:500]}")
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.content

    def version(self) -> str:
        return str(self.api("GET", "/api/version").get("release", "?"))

    def create_project(self, title: str, label_config: str) -> int:
        return int(self.api("POST", "/api/projects/", json={"title": title, "label_config": label_config})["id"])

    def project(self, project_id: int) -> dict[str, Any]:
        return self.api("GET", f"/api/projects/{project_id}/")

    def tasks(self, project_id: int) -> list[dict[str, Any]]:
        """Every task of the project with its predictions (paginated)."""
        tasks: list[dict[str, Any]] = []
        page = 1
        while True:
            body = self.api("GET", "/api/tasks/", params={"project": project_id, "page": page, "page_size": 100, "fields": "all"})
            tasks.extend(body["tasks"])
            if len(tasks) >= body["total"] or not body["tasks"]:
                return tasks
            page += 1

    def personal_access_token(self) -> str:
        """The admin's personal access token: a JWT refresh token made by ``POST /api/token/``.

        Label Studio lets a user hold one valid token (a second POST answers 409), so it is made
        once per server and remembered; the full token is only ever shown in that answer.
        """
        if self._pat is None:
            self._pat = str(self.api("POST", "/api/token/", expect=201)["token"])
        return self._pat


_shared: LabelStudio | None = None


def shared() -> LabelStudio:
    """The session's server: started at the first call, stopped when the process exits (or the
    running one ``ALPOLICY_LABELSTUDIO_URL`` names, left running)."""
    global _shared
    if _shared is None:
        url = os.environ.get(URL_ENV)
        if url:
            server = LabelStudio(data_dir=tempfile.gettempdir(), port=1)  # nothing of its own to clean
            server.url = url.rstrip("/")
        else:
            server = LabelStudio()
            server.start()

            def stop() -> None:
                server.stop()
                server.cleanup()

            atexit.register(stop)
        _shared = server
    return _shared


if __name__ == "__main__":  # a server for ALPOLICY_LABELSTUDIO_URL, until Ctrl-C
    with LabelStudio() as running:
        print(f"{URL_ENV}={running.url}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    running.cleanup()
