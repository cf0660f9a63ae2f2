"""Packaging (docs/install.md): the systemd unit, the container image and the single-file build.

Tests that need a tool this machine lacks (systemd-analyze, systemd-sysusers, a Docker daemon) are skipped
with the reason; the rest run everywhere.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import pytest
import yaml

from floatsrv import __version__
from floatsrv.auth.passwords import hash_password
from floatsrv.cli import main as cli_main
from floatsrv.config import EXIT_BAD_CONFIG, parse_config
from floatsrv.container import serve_command
from floatsrv.server import EXIT_BAD_DATA
from tests.conftest import floatsrv_cli
from tests.polling import wait_for
from tests.procs import ServerProcess, free_port

ROOT = Path(__file__).resolve().parent.parent
UNIT = ROOT / "systemd" / "floatsrv.service"
ENV_FILE = ROOT / "systemd" / "floatsrv.env"
SYSUSERS = ROOT / "systemd" / "floatsrv.sysusers"
DOCKERFILE = ROOT / "Dockerfile"
INSTALLED_FLOATSRV = "/opt/floatsrv/bin/floatsrv"  # where docs/install.md puts it


def unit_settings(text: str) -> dict[str, list[str]]:
    """Every `Key=value` of a unit file (keys may repeat), ignoring sections and comments."""
    settings: dict[str, list[str]] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def serve_params(args: list[str]) -> dict[str, object]:
    """Parse a `floatsrv serve ...` argument list with the real CLI (without running it)."""
    assert args[0] == "serve", args
    command = cli_main.commands["serve"]
    with command.make_context("serve", args[1:]) as ctx:
        return dict(ctx.params)


# --- systemd ---


def run_systemd_tool(command: list[str]) -> str:
    """Run a systemd tool, assert it succeeded, and return what it printed."""
    result = subprocess.run(
        command, capture_output=True, text=True, env={**os.environ, "SYSTEMD_LOG_COLOR": "0"}, timeout=60
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    return output


def test_unit_runs_serve_with_its_directories() -> None:
    settings = unit_settings(UNIT.read_text())
    exec_start = settings["ExecStart"][-1].split()
    assert exec_start[0] == INSTALLED_FLOATSRV
    params = serve_params(exec_start[1:])
    assert params["config_path"] == Path("/etc/floatsrv/config.yaml")
    assert params["data_dir"] == Path("/var/lib/floatsrv")
    # The directories systemd creates (and opens in the sandbox) are the ones the command line uses.
    assert settings["StateDirectory"] == ["floatsrv"]
    assert settings["ConfigurationDirectory"] == ["floatsrv"]
    assert settings["EnvironmentFile"] == ["-/etc/floatsrv/floatsrv.env"]
    assert settings["User"] == ["floatsrv"]
    assert settings["CapabilityBoundingSet"] == [""]
    # No /bin/kill on minimal Debian: floatsrv signals its own server.
    assert settings["ExecReload"] == [f"{INSTALLED_FLOATSRV} reload --pid $MAINPID"]
    assert settings["KillSignal"] == ["SIGTERM"]
    # Restarted when it fails, but an unusable configuration is not worth restarting for.
    assert settings["Restart"] == ["on-failure"]
    assert settings["RestartPreventExitStatus"] == [f"{EXIT_BAD_CONFIG} {EXIT_BAD_DATA}"]


def test_unit_sandboxes_the_service() -> None:
    settings = unit_settings(UNIT.read_text())
    # The last assignment wins in systemd; each of these must be set, and set to the sandboxing value.
    sandbox = {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "PrivateTmp": "yes",
        "ProtectHome": "yes",
        "PrivateDevices": "yes",
        "ProtectKernelTunables": "yes",
        "ProtectKernelModules": "yes",
        "ProtectControlGroups": "yes",
        "RestrictSUIDSGID": "yes",
        "AmbientCapabilities": "",
        "CapabilityBoundingSet": "",
    }
    assert {key: settings.get(key, ["<unset>"])[-1] for key in sandbox} == sandbox
    # Only the state directory (and the single-file build's cache) are writable under ProtectSystem=strict:
    # no ReadWritePaths= opening up more of the file system.
    assert "ReadWritePaths" not in settings
    assert settings["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]


def test_unit_stop_timeout_covers_draining_and_the_final_sync() -> None:
    settings = unit_settings(UNIT.read_text())
    timeout = settings["TimeoutStopSec"][-1]
    assert timeout.endswith("s") and timeout[:-1].isdigit(), timeout
    drain = re.search(r"shutdown_timeout=([0-9.]+)", (ROOT / "floatsrv" / "server.py").read_text())
    assert drain is not None, "server.py no longer passes shutdown_timeout= to run_app: recheck TimeoutStopSec"
    final_sync = parse_config("", ROOT).sync.shutdown_timeout_seconds
    margin = 10
    assert int(timeout[:-1]) >= float(drain.group(1)) + final_sync + margin


def test_env_file_lists_the_variables_the_server_reads() -> None:
    lookup = r"""(?:environ\.get\(|environ\[|getenv\()\s*["'](FLOATSRV_[A-Z0-9_]+)["']"""
    # The container's entry point (floatsrv/container.py: FLOATSRV_CONFIG, FLOATSRV_DEMO) is documented for
    # Docker in docs/install.md; this file is the systemd unit's.
    sources = [path for path in (ROOT / "floatsrv").rglob("*.py") if path.name != "container.py"]
    read = {name for path in sources for name in re.findall(lookup, path.read_text())}
    documented = set(re.findall(r"^#?(FLOATSRV_[A-Z_]+)=", ENV_FILE.read_text(), re.MULTILINE))
    assert read, "floatsrv reads no FLOATSRV_* variable any more?"
    assert documented == read


def test_systemd_unit_verifies(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    # verify insists that ExecStart= names an existing executable: point it at this checkout's floatsrv.
    floatsrv = Path(sys.executable).parent / "floatsrv"
    text = UNIT.read_text().replace(INSTALLED_FLOATSRV, str(floatsrv if floatsrv.exists() else sys.executable))
    unit = tmp_path / UNIT.name
    unit.write_text(text)
    output = run_systemd_tool([analyze, "verify", "--man=no", str(unit)])
    # Unknown or misspelt settings are only warnings (exit code 0): fail on any remark about our unit.
    assert [line for line in output.splitlines() if UNIT.name in line] == []


def test_sysusers_file_creates_the_service_user(tmp_path: Path) -> None:
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is None:
        pytest.skip("systemd-sysusers is not installed (apt-get install systemd)")
    (tmp_path / "etc").mkdir()
    output = run_systemd_tool([sysusers, "--dry-run", f"--root={tmp_path}", str(SYSUSERS)])
    assert "Creating user 'floatsrv'" in output, output
    assert unit_settings(UNIT.read_text())["User"] == ["floatsrv"]


# --- Docker ---


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, rest = line.partition(" ")
            pairs.append((instruction.upper(), rest.strip()))
    return pairs


def mounted_config(tmp_path: Path, *, published: bool) -> Path:
    """The example config as an admin mounts it: as shipped (published demo passwords), or with each demo
    user's password replaced by a hash of a password of their own."""
    data = yaml.safe_load((ROOT / "config.example.yaml").read_text())
    data["license_files"] = [str(ROOT / "licenses")]
    if not published:
        for user in data["auth"]["users"]:
            user["password_hash"] = hash_password(f"not-published-{user['username']}")
            del user["password"]
    path = tmp_path / ("published.yaml" if published else "mounted.yaml")
    path.write_text(yaml.safe_dump(data))
    return path


def test_dockerfile_runs_serve_as_non_root_with_a_volume(tmp_path: Path) -> None:
    instructions = dockerfile_instructions()
    runtime = instructions[max(i for i, (ins, _) in enumerate(instructions) if ins == "FROM") :]
    last = {ins: rest for ins, rest in runtime}
    assert last["USER"].split(":")[0] not in ("", "0", "root")
    assert last["VOLUME"] == "/var/lib/floatsrv"
    assert last["EXPOSE"] == "8080"
    assert json.loads(last["CMD"]) == ["floatsrv", "container-start"]
    assert "FLOATSRV_CONFIG=/etc/floatsrv/config.yaml" in last["ENV"]
    # What container-start runs with a config mounted at $FLOATSRV_CONFIG.
    mounted = mounted_config(tmp_path, published=False)
    command = serve_command({"FLOATSRV_CONFIG": str(mounted)})
    assert isinstance(command, list) and command[0] == "serve"
    assert serve_params(command) == {
        "config_path": mounted,
        "host": "0.0.0.0",
        "port": None,
        "data_dir": Path("/var/lib/floatsrv"),
    }


def test_the_image_never_serves_published_passwords_on_the_network(tmp_path: Path) -> None:
    """Without a mounted config the image refuses to start, in one line; the demo must be asked for, and then
    listens on the container's loopback only. (The entry point's own logic, run without Docker.)"""
    missing = str(tmp_path / "config.yaml")
    env = {**os.environ, "FLOATSRV_CONFIG": missing}
    env.pop("FLOATSRV_DEMO", None)
    result = floatsrv_cli("container-start", env=env, cwd=tmp_path)
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"floatsrv: no config at {missing}: mount yours there") and "FLOATSRV_DEMO=1" in line
    demo = serve_command({"FLOATSRV_CONFIG": missing, "FLOATSRV_DEMO": "1"})
    assert isinstance(demo, list) and serve_params(demo)["host"] == "127.0.0.1"
    assert demo[demo.index("--config") + 1] == "/usr/share/floatsrv/demo/config.yaml"
    assert isinstance(serve_command({"FLOATSRV_CONFIG": missing, "FLOATSRV_DEMO": "yes"}), str)
    # A mounted copy of the example config (published passwords) is refused too, in one line; with the demo
    # users' passwords replaced by hashes it is served on all interfaces.
    copied = mounted_config(tmp_path, published=True)
    result = floatsrv_cli("container-start", env={**env, "FLOATSRV_CONFIG": str(copied)}, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert "'demo', 'admin'" in line and "published demo password" in line and "hash-password" in line, line
    copied = mounted_config(tmp_path, published=False)
    served = serve_command({"FLOATSRV_CONFIG": str(copied)})
    assert isinstance(served, list) and serve_params(served)["host"] == "0.0.0.0", served


def healthcheck_command() -> list[str]:
    (rest,) = [rest for ins, rest in dockerfile_instructions() if ins == "HEALTHCHECK"]
    command: list[str] = json.loads(rest[rest.index("CMD") + 3 :])
    assert command[:2] == ["floatsrv", "healthcheck"], command
    return [sys.executable, "-m", "floatsrv", *command[1:]]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


@pytest.mark.slow
def test_dockerfile_healthcheck_reports_the_server_state(tmp_path: Path) -> None:
    """The HEALTHCHECK command itself, as the image runs it (FLOATSRV_CONFIG set), against a real server on
    the port its config names, and against nothing."""
    server = ServerProcess(tmp_path)
    config = yaml.safe_load(server.config_path.read_text())
    config["server"]["port"] = server.port
    server.config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "FLOATSRV_CONFIG": str(server.config_path)}
    server.start()
    try:
        assert get(server.url + "/readyz")[0] == 200
        result = subprocess.run(healthcheck_command(), capture_output=True, text=True, timeout=30, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        assert server.stop() == 0
    result = subprocess.run(healthcheck_command(), capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 1 and "not healthy: unreachable" in result.stderr


def test_reload_signals_the_server_of_a_data_directory(tmp_path: Path) -> None:
    """`floatsrv reload` (the unit's ExecReload, with --pid; or by data directory) reloads a running server."""
    server = ServerProcess(tmp_path)
    server.start()
    try:
        assert server.proc is not None
        by_dir = server.cli("reload")
        assert by_dir.returncode == 0 and f"pid {server.proc.pid}" in by_dir.stdout, by_dir.stderr
        wait_for(lambda: any(e["event"] == "config_reloaded" for e in server.log_lines()))
        by_pid = floatsrv_cli("reload", "--pid", str(server.proc.pid))
        assert by_pid.returncode == 0, by_pid.stderr
        wait_for(lambda: len([e for e in server.log_lines() if e["event"] == "config_reloaded"]) == 2)
    finally:
        assert server.stop() == 0
    nobody = server.cli("reload")
    assert nobody.returncode == 1 and "no floatsrv is serving" in nobody.stderr


def docker_unavailable() -> str | None:
    docker = shutil.which("docker")
    if docker is None:
        return "the docker CLI is not installed"
    try:
        info = subprocess.run([docker, "info"], capture_output=True, text=True, timeout=30)
    except subprocess.TimeoutExpired:
        return "`docker info` timed out"
    if info.returncode != 0:
        return f"no usable Docker daemon: {(info.stderr.strip().splitlines() or ['docker info failed'])[-1]}"
    return None


def docker_logs(container: str) -> str:
    logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True, timeout=30)
    return (logs.stdout + logs.stderr)[-3000:]


@pytest.mark.slow
def test_docker_image_builds_and_serves() -> None:
    """Build the image and run it: non-root, serving, admin commands, healthy, clean stop. The base image can
    come from elsewhere (a local registry mirror): FLOATSRV_TEST_PYTHON_IMAGE=registry.local/python:3.11-slim."""
    reason = docker_unavailable()
    if reason is not None:
        pytest.skip(reason)
    base = os.environ.get("FLOATSRV_TEST_PYTHON_IMAGE", "python:3.11-slim")
    if subprocess.run(["docker", "image", "inspect", base], capture_output=True, timeout=60).returncode != 0:
        pull = subprocess.run(["docker", "pull", base], capture_output=True, text=True, timeout=600)
        if pull.returncode != 0:
            pytest.skip(f"base image {base} is not available: {(pull.stderr.strip().splitlines() or ['?'])[-1]}")
    tag = "floatsrv:packaging-test"
    build = subprocess.run(
        ["docker", "build", "--build-arg", f"PYTHON_IMAGE={base}", "-t", tag, str(ROOT)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    # The customer's config, mounted: the image has none of its own (and never serves the demo on the network).
    mounted = Path(tempfile.mkdtemp(prefix="floatsrv-image-"))
    # (Its users with passwords of their own: the image refuses published demo passwords on the network.)
    config = yaml.safe_load(mounted_config(mounted, published=False).read_text())
    config["license_files"] = ["licenses"]
    (mounted / "config.yaml").write_text(yaml.safe_dump(config))
    shutil.copytree(ROOT / "licenses", mounted / "licenses")
    for path in [mounted, *mounted.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    run = subprocess.run(
        [
            "docker",
            "run",
            "-d",
            "-p",
            "127.0.0.1::8080",
            "--stop-timeout",
            "60",
            "--health-interval",
            "1s",
            "-v",
            f"{mounted / 'config.yaml'}:/etc/floatsrv/config.yaml:ro",
            "-v",
            f"{mounted / 'licenses'}:/etc/floatsrv/licenses:ro",
            tag,
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    container = run.stdout.strip()
    try:
        port_line = subprocess.run(
            ["docker", "port", container, "8080/tcp"], capture_output=True, text=True, check=True, timeout=30
        ).stdout.splitlines()[0]
        url = f"http://127.0.0.1:{port_line.rsplit(':', 1)[1]}"
        deadline = time.monotonic() + 60
        while True:
            try:
                if get(url + "/")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, docker_logs(container)
            time.sleep(0.5)
        uid = subprocess.run(["docker", "exec", container, "id", "-u"], capture_output=True, text=True, check=True)
        assert uid.stdout.strip() != "0"
        # FLOATSRV_CONFIG in the image: admin commands find the database without options.
        users = subprocess.run(
            ["docker", "exec", container, "floatsrv", "user", "list"], capture_output=True, text=True
        )
        assert users.returncode == 0 and "admin" in users.stdout, users.stderr
        assert get(url + "/healthz")[0] == 200
        deadline = time.monotonic() + 30
        status = ""
        while status != "healthy" and time.monotonic() < deadline:
            time.sleep(1)
            status = subprocess.run(
                ["docker", "inspect", "-f", "{{.State.Health.Status}}", container], capture_output=True, text=True
            ).stdout.strip()
        assert status == "healthy", docker_logs(container)
        subprocess.run(["docker", "stop", container], capture_output=True, check=True, timeout=90)
        code = subprocess.run(
            ["docker", "inspect", "-f", "{{.State.ExitCode}}", container], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert code == "0", docker_logs(container)
    finally:
        subprocess.run(["docker", "rm", "-f", container], capture_output=True, timeout=60)


# --- the single-file build ---


def test_constraints_pin_the_run_time_closure_in_its_own_section() -> None:
    """constraints.txt's run-time section is exactly floatsrv's dependencies and theirs (as installed)."""
    from importlib.metadata import requires

    from packaging.requirements import Requirement

    def needs(distribution: str) -> list[str]:
        """What `distribution` needs on this Python (no extras; markers evaluated)."""
        out = []
        for text in requires(distribution) or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                out.append(requirement.name.lower().replace("_", "-"))
        return out

    closure: set[str] = set()
    pending = needs("floatsrv")
    while pending:
        dependency = pending.pop()
        if dependency not in closure:
            closure.add(dependency)
            pending += needs(dependency)
    text = (ROOT / "constraints.txt").read_text()
    runtime_text = text.split("# --- run time ---", 1)[1].split("# --- development ---", 1)[0]
    runtime = {line.split("==")[0].lower().replace("_", "-") for line in runtime_text.split() if "==" in line}
    assert runtime == closure, runtime ^ closure


def pinned() -> set[str]:
    pins = set()
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        name, sep, version = line.strip().partition("==")
        if sep:
            pins.add(f"{re.sub(r'[-_.]+', '_', name).lower()}=={version}")
    return pins


@pytest.mark.slow
def test_single_file_build_runs_with_a_plain_python(tmp_path: Path) -> None:
    """`python3 dev.py build`, then the artefact under a bare interpreter: no virtualenv, no usable HOME."""
    pyz = tmp_path / "floatsrv.pyz"
    # The README's command, as an admin runs it from the checkout (dev.py builds with the checkout's .venv).
    build = subprocess.run(
        [sys.executable, "dev.py", "build", "-o", str(pyz)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    assert f"dev.py: built {pyz}" in build.stderr
    with zipfile.ZipFile(pyz) as archive:
        bundled = {
            name.split("/")[1].removesuffix(".dist-info")
            for name in archive.namelist()
            if name.startswith("site-packages/") and name.split("/")[1].endswith(".dist-info")
        }
    bundled_pins = {f"{re.sub(r'[-_.]+', '_', d.rsplit('-', 1)[0]).lower()}=={d.rsplit('-', 1)[1]}" for d in bundled}
    assert f"floatsrv=={__version__}" in bundled_pins
    assert bundled_pins - {f"floatsrv=={__version__}"} <= pinned(), "the build must use constraints.txt"

    # The interpreter the virtualenv was made from, in isolated mode: it sees none of the venv's packages.
    python = [getattr(sys, "_base_executable", sys.executable), "-I"]
    home = tmp_path / "home"
    home.write_text("a file: nothing can be created under this HOME\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "SHIV_ROOT": str(tmp_path / "shiv")}
    version = subprocess.run([*python, str(pyz), "--version"], capture_output=True, text=True, env=env, timeout=120)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"floatsrv, version {__version__}"
    assert list((tmp_path / "shiv").iterdir()), "SHIV_ROOT was not used"

    config = tmp_path / "config.yaml"
    shutil.copy(ROOT / "config.example.yaml", config)
    shutil.copytree(ROOT / "licenses", tmp_path / "licenses")  # the demo license file, beside the config
    port, data = free_port(), tmp_path / "data"
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*python, str(pyz), "serve", "--config", str(config), "--port", str(port), "--data-dir", str(data)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                status, _ = get(url + "/")
                if status == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        status, body = get(url + "/healthz")
        assert (status, json.loads(body)["status"]) == (200, "ok")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "server_stopped" in log.read_text()
