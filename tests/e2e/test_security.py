"""The token with a real server: private files, local clients need no flag, everyone else
does, the start-up line shows the worker command, rotation, and no token in the logs."""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import typer

from kickoff import auth
from kickoff.cli import token_cmd
from kickoff.errors import KickoffError
from tests.conftest import ServerProcess, free_port, kickoff_cmd, wait_until

MakeServer = Callable[..., ServerProcess]


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def run(
    args: list[str], env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*kickoff_cmd(), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def without_token(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k not in ("KICKOFF_TOKEN", "KICKOFF_SERVER")}


def config_file(server: ServerProcess) -> Path:
    return Path(server.base_env["XDG_CONFIG_HOME"]) / "kickoff" / "tokens.json"


def status_with(server: ServerProcess, token: str) -> int:
    headers = {"Authorization": f"Bearer {token}"}
    return httpx.get(f"{server.url}/v1/stats", headers=headers, timeout=5).status_code


def test_the_token_file_and_the_client_config_are_0600(server: ServerProcess) -> None:
    token_file = Path(f"{server.db_path}.token")
    assert mode(token_file) == 0o600
    assert mode(server.db_path.parent) == 0o700  # made by the server: private
    assert token_file.read_text().strip() == server.token
    config = config_file(server)
    assert mode(config) == 0o600
    remembered = json.loads(config.read_text())
    for name in ("127.0.0.1", "localhost", socket.gethostname()):
        assert remembered[f"{name}:{server.port}"] == server.token


def loopback_names() -> list[str]:
    names = ["127.0.0.1", "localhost"]
    try:
        if socket.gethostbyname(socket.gethostname()).startswith("127."):
            names.append(socket.gethostname())
    except OSError:
        pass
    return names


def test_a_client_on_the_same_machine_needs_no_token(server: ServerProcess) -> None:
    env = without_token(server.env)
    for name in loopback_names():
        result = run(["stats", "--json", "--server", f"{name}:{server.port}"], env)
        assert result.returncode == 0, (name, result.stderr)


def test_elsewhere_the_token_must_be_given(server: ServerProcess, tmp_path: Path) -> None:
    """Another machine (or account) has no config entry: exit 5 until the token is given."""
    elsewhere = {**without_token(server.env), "XDG_CONFIG_HOME": str(tmp_path / "other")}
    address = ["--server", server.address]
    refused = run(["stats", *address], elsewhere)
    assert refused.returncode == 5
    assert refused.stderr.startswith("error: ") and "--token" in refused.stderr
    wrong = run(["stats", *address, "--token", "guessed-token-123"], elsewhere)
    assert wrong.returncode == 5 and "guessed-token-123" not in wrong.stderr + wrong.stdout
    assert run(["stats", *address, "--token", server.token], elsewhere).returncode == 0
    assert run(["stats", *address], {**elsewhere, "KICKOFF_TOKEN": server.token}).returncode == 0


def test_the_start_up_shows_the_worker_command_and_the_token_nowhere_else(
    make_server: MakeServer,
) -> None:
    server = make_server("--verbose")
    for token in (server.token, "wrong", server.token[:-1], "-"):
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=server.url, headers=headers, timeout=5) as http:
            http.post("/v1/tasks", json={"command": "echo hi"})
            http.post("/v1/tasks", content=b"{broken")
            http.get("/v1/tasks/999")
            http.post("/v1/workers/nobody/claim", json={})
    assert server.stop() == 0
    lines = [line for line in server.output().splitlines() if server.token in line]
    assert len(lines) == 1, lines
    assert "kickoff worker" in lines[0] and f"--token {server.token}" in lines[0]
    assert server.token[:-1] not in server.output().replace(server.token, "")


def test_the_banner_is_on_stdout_and_the_log_on_stderr_without_the_token(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    """As docs/security.md says: stdout has the banner (with the token), stderr the log."""
    port = free_port()
    db = tmp_path / "k.db"
    out, err = tmp_path / "stdout", tmp_path / "stderr"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        proc = subprocess.Popen(
            [*kickoff_cmd(), "server", "--port", str(port), "--db", str(db), "--verbose"],
            env=isolated_env,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        wait_until(lambda: "kickoff worker" in out.read_text(), timeout=20, what="the banner")
        token = Path(f"{db}.token").read_text().strip()
        headers = {"Authorization": f"Bearer {token}"}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers) as http:
            assert http.post("/v1/tasks", json={"command": "echo hi"}).status_code == 201
    finally:
        proc.terminate()
        assert proc.wait(timeout=15) == 0
    assert f"--token {token}" in out.read_text()
    assert "DEBUG" in err.read_text() and token not in err.read_text()


def test_rotating_the_token_of_a_running_server(
    server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = server.token
    monkeypatch.setenv("XDG_CONFIG_HOME", server.base_env["XDG_CONFIG_HOME"])
    new = auth.rotate(server.db_path)
    wait_until(lambda: status_with(server, new) == 200, timeout=10, what="the new token")
    assert status_with(server, old) == 401
    assert json.loads(config_file(server).read_text())[f"127.0.0.1:{server.port}"] == new
    assert run(["stats", "--server", server.address], without_token(server.env)).returncode == 0
    assert mode(Path(f"{server.db_path}.token")) == 0o600


def test_rotate_token_at_start_up(server: ServerProcess) -> None:
    old = server.token
    server.stop()
    server.extra_args.append("--rotate-token")
    server.start()
    assert server.token != old
    assert status_with(server, old) == 401
    assert status_with(server, server.token) == 200


def test_a_second_server_on_the_same_database_is_refused(server: ServerProcess) -> None:
    result = run(
        ["server", "--port", str(free_port()), "--db", str(server.db_path)], server.base_env, 30
    )
    assert result.returncode == 1
    assert (
        result.stderr.startswith("error: ") and "in use by another kickoff server" in result.stderr
    )
    assert "Traceback" not in result.stderr
    assert status_with(server, server.token) == 200  # the first one is untouched


def test_a_broken_token_file_stops_the_server_with_a_clear_message(
    tmp_path: Path, isolated_env: dict[str, str]
) -> None:
    db = tmp_path / "k.db"
    Path(f"{db}.token").write_text("two words\n")
    result = run(["server", "--port", str(free_port()), "--db", str(db)], isolated_env, 30)
    assert result.returncode == 1
    assert "does not hold a valid token" in result.stderr and "Traceback" not in result.stderr


# -- `kickoff token` (registered by the CLI's owner; run here on its own typer app) --------


TokenCli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def token_cli(capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> TokenCli:
    """token_cli(*args, env=...) -> (exit code, stdout, stderr), in-process."""
    app = typer.Typer()
    token_cmd.register(app)
    app.command("noop", hidden=True)(lambda: None)  # a group of commands, as the real CLI
    command = typer.main.get_command(app)

    def invoke(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
        for name in [n for n in os.environ if n.startswith("KICKOFF_")]:
            monkeypatch.delenv(name)
        for name in ("HOME", "XDG_CONFIG_HOME", "XDG_DATA_HOME"):
            monkeypatch.setenv(name, env[name])
        capfd.readouterr()
        try:
            command.main(args=["token", *args], prog_name="kickoff", standalone_mode=False)
            code = 0
        except KickoffError as exc:  # what kickoff.cli.run does
            sys.stderr.write(f"error: {exc.message}\n")
            code = exc.exit_code
        captured = capfd.readouterr()
        return code, captured.out, captured.err

    return invoke


def test_the_token_command_shows_and_rotates(server: ServerProcess, token_cli: TokenCli) -> None:
    env = without_token(server.env)
    code, out, _ = token_cli("--db", str(server.db_path), env=env)
    assert (code, out) == (0, server.token + "\n")
    code, out, _ = token_cli("--server", server.address, env=env)
    assert (code, out) == (0, server.token + "\n")
    code, out, err = token_cli("--db", str(server.db_path), "--rotate", env=env)
    new = out.strip()
    assert code == 0 and new != server.token and "new token" in err
    wait_until(lambda: status_with(server, new) == 200, timeout=10, what="the new token")
    assert status_with(server, server.token) == 401
    code, out, _ = token_cli("--server", f"localhost:{server.port}", env=env)
    assert out.strip() == new


def test_the_token_command_without_a_token_yet(
    tmp_path: Path, isolated_env: dict[str, str], token_cli: TokenCli
) -> None:
    code, out, err = token_cli("--db", str(tmp_path / "none.db"), env=isolated_env)
    assert code == 4 and out == "" and "kickoff server" in err
    code, out, err = token_cli("--server", "elsewhere:1", env=isolated_env)
    assert code == 4 and "no token remembered for elsewhere:1" in err
