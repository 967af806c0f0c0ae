"""A secret never goes in clear text off the machine: a plain ``http://`` URL of another host for a
service that receives the Roboflow key or the Label Studio token is refused in one line before any
connection (unless ``--allow-insecure-http``), and a redirect elsewhere is not followed.

No test sends anything off this machine: every process gets a loopback "trap" as its HTTP proxy,
so a request the check failed to stop reaches the trap (counted) instead of 192.0.2.1 (TEST-NET-1,
a documentation address that is only ever a string here)."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

import alpolicy
from alpolicy import Policy
from alpolicy.io.checks import cleartext_secret, is_loopback_host
from alpolicy.errors import UsageError
from alpolicy.io.http import follows_redirect
from alpolicy.runtime.pipeline import options_with

from .cli import alpolicy as alpolicy_cli
from .conftest import API_KEY, make_frames
from .servers.roboflow import FakeRoboflow

FAR = "192.0.2.1"  # TEST-NET-1 (RFC 5737): never routed
LS_TOKEN = "0123456789abcdef0123456789abcdef01234567"


def proxy_env(proxy_url: str) -> dict[str, str]:
    """Every http:// request of the process through ``proxy_url`` (loopback), except loopback ones."""
    env = {}
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        env[name] = proxy_url
    for name in ("no_proxy", "NO_PROXY"):
        env[name] = "127.0.0.1,localhost"
    return env


@pytest.fixture
def trap(monkeypatch) -> Iterator[FakeRoboflow]:
    """A loopback server posing as the proxy to the world: whatever it accepts should never have been sent."""
    with FakeRoboflow(api_key=API_KEY) as server:
        for name, value in proxy_env(server.url).items():
            monkeypatch.setenv(name, value)
        yield server


def test_the_loopback_decision():
    for host in ("localhost", "LOCALHOST", "localhost.", "127.0.0.1", "127.8.9.10", "::1", "[::1]", "::ffff:127.0.0.1"):
        assert is_loopback_host(host), host
    # *.localhost is refused: glibc without nss-myhostname resolves it through /etc/hosts or DNS
    for host in (FAR, "10.1.2.3", "0.0.0.0", "::", "api.roboflow.com", "labels.localhost", "localhost.example.com",
                 "127.0.0.1.nip.io", ""):
        assert not is_loopback_host(host), host


def test_the_check_refuses_only_plain_http_to_another_machine():
    for url in ("https://api.roboflow.com", f"https://{FAR}:9001", "http://localhost:9001", "http://127.0.0.1:8080",
                "http://[::1]:9001"):
        cleartext_secret(url, "--api-url", secret="API key")
    with pytest.raises(UsageError) as refused:
        cleartext_secret(f"http://{FAR}:9001", "--inference-url", secret="API key")
    assert str(refused.value) == (f"--inference-url http://{FAR}:9001 would send your API key in clear text: "
                                  "use https://, or pass --allow-insecure-http if you really mean it")
    with pytest.raises(UsageError, match=r"labelstudio_url http://labels\.localhost:8080 would send your API token .*"
                                         r"--allow-insecure-http \(allow_insecure_http=True\)"):
        cleartext_secret("http://labels.localhost:8080", "labelstudio_url", secret="API token")
    cleartext_secret(f"http://{FAR}:9001", "--inference-url", secret="API key", allow_insecure_http=True)


def _cli_cases(tmp_path: Any) -> list[tuple[tuple[str, ...], dict[str, str], str]]:
    frames = str(tmp_path / "frames")
    infer = (frames, "--model", "roboflow:vehicles/3", "--to", f"folder:{tmp_path / 'out'}")
    upload = (frames, "--model", "roboflow:vehicles/3", "--to", "roboflow:q")
    label = (frames, "--model", "roboflow:vehicles/3", "--to", "labelstudio:1")
    cli_hint = "use https://, or pass --allow-insecure-http if you really mean it"
    env_hint = "use https://, or pass --allow-insecure-http (allow_insecure_http=True) if you really mean it"
    return [
        ((*infer, "--inference-url", f"http://{FAR}:9001"), {},
         f"--inference-url http://{FAR}:9001 would send your API key in clear text: {cli_hint}"),
        ((*upload, "--api-url", f"http://{FAR}"), {}, f"--api-url http://{FAR} would send your API key in clear text: {cli_hint}"),
        ((*label, "--labelstudio-url", f"http://{FAR}:8080/"), {},
         f"--labelstudio-url http://{FAR}:8080 would send your API token in clear text: {cli_hint}"),
        (infer, {"ROBOFLOW_INFERENCE_URL": f"http://{FAR}:9001"},
         f"ROBOFLOW_INFERENCE_URL http://{FAR}:9001 would send your API key in clear text: {env_hint}"),
        (upload, {"ROBOFLOW_API_URL": f"http://{FAR}"},
         f"ROBOFLOW_API_URL http://{FAR} would send your API key in clear text: {env_hint}"),
        (label, {"LABEL_STUDIO_URL": f"http://{FAR}:8080"},
         f"LABEL_STUDIO_URL http://{FAR}:8080 would send your API token in clear text: {env_hint}"),
    ]


def test_every_url_option_and_variable_refuses_plain_http_to_another_machine_before_any_connection(
        roboflow, env, trap, tmp_path):
    make_frames(tmp_path / "frames", 3)
    base = {**env, **proxy_env(trap.url), "LABEL_STUDIO_API_KEY": LS_TOKEN, "LABEL_STUDIO_URL": roboflow.url}
    for args, extra_env, expected in _cli_cases(tmp_path):
        result = alpolicy_cli("run", *args, "--journal", str(tmp_path / "j.sqlite"), "--timeout", "2", "--retry-for", "0", "--no-progress",
                              env={**base, **extra_env})
        assert result.code == 2, (args, extra_env, result.err)
        assert result.err == f"alpolicy: error: {expected}\n", (args, extra_env, result.err)
        assert API_KEY not in result.err + result.out
    assert trap.connections_accepted == 0
    assert roboflow.connections_accepted == 0  # refused before anything, even the loopback services
    assert not (tmp_path / "out").exists()


def test_allow_insecure_http_lets_it_through_and_loopback_http_always_works(roboflow, env, tmp_path, monkeypatch):
    """With the flag the request goes out: here to the loopback fake posing as the proxy to 192.0.2.1."""
    frames = tmp_path / "frames"
    make_frames(frames, 3)
    through_proxy = {**env, **proxy_env(roboflow.url)}
    result = alpolicy_cli("run", str(frames), "--model", "roboflow:vehicles/3", "--to", f"folder:{tmp_path / 'out'}",
                          "--inference-url", f"http://{FAR}:9001", "--allow-insecure-http", "--no-progress",
                          "--journal", str(tmp_path / "j.sqlite"), env=through_proxy)
    assert result.code == 0, result.err
    assert roboflow.requests["infer"].total == 3
    # the library: the keyword reaches both option sets; without it the same call is refused
    options = options_with(None, {"allow_insecure_http": True}, "roboflow:q")
    assert options.model_options.allow_insecure_http and options.destination_options.allow_insecure_http
    for name, value in proxy_env(roboflow.url).items():
        monkeypatch.setenv(name, value)
    keywords: dict[str, Any] = {"model": "roboflow:vehicles/3", "journal": None, "progress": False,
                                "inference_url": f"http://{FAR}:9001"}
    with pytest.raises(UsageError, match=r"inference_url http://192\.0\.2\.1:9001 would send your API key in clear text"):
        alpolicy.run(frames, Policy.from_conditionals({}), **keywords)
    assert roboflow.requests["infer"].total == 3
    report = alpolicy.run(frames, Policy.from_conditionals({}), allow_insecure_http=True, **keywords)
    assert report.failed == 0 and roboflow.requests["infer"].total == 6
    with pytest.raises(UsageError, match="would send your API key in clear text"):
        alpolicy.active_learning(str(frames), ".jpg", ["vehicles", 3], "q", use_localhost=True,
                                 local_server=f"http://{FAR}:9001/", journal=None, progress=False)
    # loopback http, by name and by address, needs no flag
    for url in (f"http://localhost:{roboflow.port}", roboflow.url):
        report = alpolicy.run(frames, Policy.from_conditionals({}), model="roboflow:vehicles/3", journal=None,
                              progress=False, inference_url=url)
        assert report.failed == 0
    assert roboflow.requests["infer"].total == 12


class _Redirector:
    """A loopback server answering every request with a redirect to ``target`` + the same path and query."""

    def __init__(self, target: str, status: int = 302) -> None:
        self.requests = 0
        redirector = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _redirect(self) -> None:
                redirector.requests += 1
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(status)
                self.send_header("Location", target + self.path)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_POST = _redirect

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    def __enter__(self) -> "_Redirector":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_a_redirect_to_another_host_is_not_followed_with_the_key(roboflow, env, tmp_path):
    """The Location repeats the query string, ``api_key`` included: following it would hand the key to
    another host (here ``localhost``, another name for the fake, which must see nothing)."""
    frames = tmp_path / "frames"
    make_frames(frames, 2)
    for status in (302, 307):
        with _Redirector(f"http://localhost:{roboflow.port}", status) as redirector:
            with pytest.raises(UsageError) as refused:
                alpolicy.run(frames, Policy.from_conditionals({}), model="roboflow:vehicles/3", journal=None,
                             progress=False, concurrency=1, inference_url=redirector.url)
        message = str(refused.value)
        assert message == (f"the inference server at {redirector.url} redirected inference to http://localhost:{roboflow.port}: "
                           "not followed, it would take the credentials there; if that is the service, use its URL instead")
        assert redirector.requests >= 1
    # the fake answered the model's metadata (it is the API too); inference never reached it
    assert roboflow.requests["infer"].total == 0 and roboflow.requests["root"].total == 2


def test_which_redirects_are_followed():
    follows = [("http://127.0.0.1:9001/a?api_key=k", "http://127.0.0.1:9001/b?api_key=k"),
               ("https://api.roboflow.com/x", "https://API.roboflow.com:443/y"),
               ("http://ls.example.com/api/projects/1", "https://ls.example.com/api/projects/1/")]
    refused = [("https://api.roboflow.com/x", "http://api.roboflow.com/x"),  # down to clear text
               ("https://api.roboflow.com/x", "https://evil.example.com/x"),
               ("http://127.0.0.1:9001/x", "http://localhost:9001/x"),
               ("http://127.0.0.1:9001/x", "http://127.0.0.1:9002/x"),
               ("https://api.roboflow.com/x", "https://api.roboflow.com:8443/x")]
    for old, new in follows:
        assert follows_redirect(old, new), (old, new)
    for old, new in refused:
        assert not follows_redirect(old, new), (old, new)
