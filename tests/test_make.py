"""The two entry points: `make up` (what it needs, the emulator's port, the CLI) and `.ci/run` being `make test`.

The Pulumi CLI cannot be installed here, so `make up` runs against a fake `pulumi` (FAKE_PULUMI) that records
its calls and plays the program's part against the emulator: a real moto server, real nginx and the real
`scripts/local-backend` serve what it stores.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from components.local.process import free_port, stop_process, wait_for_port
from tests.project_tools import uv_binary

ROOT = Path(__file__).resolve().parent.parent
TRACKED_LOCAL_STACK = ROOT / "stacks" / "Pulumi.local.yaml"


def test_make_up_without_pulumi_says_how_to_get_it(tmp_path: Path) -> None:
    make = shutil.which("make")
    assert make, "make is required"
    # No pulumi anywhere, and an installer address on loopback that refuses: no traffic leaves the machine.
    path = os.pathsep.join(
        directory for directory in os.environ["PATH"].split(os.pathsep) if not (Path(directory) / "pulumi").exists()
    )
    result = subprocess.run(
        [make, "-C", str(ROOT), "up", f"PULUMI={tmp_path / 'pulumi'}", "PULUMI_INSTALLER=http://127.0.0.1:9/"],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PATH": path},
        check=False,
    )
    assert result.returncode != 0, result.stdout + result.stderr
    assert "could not install the Pulumi CLI" in result.stderr, result.stderr
    # The failing step and its own error (curl's), not a guess.
    assert "downloading the installer from http://127.0.0.1:9/ failed" in result.stderr, result.stderr
    assert "curl: (7)" in result.stderr, result.stderr
    assert "Install it with:" in result.stderr, result.stderr
    assert "pulumi up" not in result.stdout, "nothing may be deployed without the CLI"


def test_ci_runs_make_test_and_nothing_else() -> None:
    commands = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert commands[-1] == "exec make test", commands
    assert all(not command.startswith(("make", "uv", "pytest")) for command in commands[:-1]), commands


def test_readme_opens_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text().splitlines()
    fence = readme.index("```sh")
    assert readme[fence + 1].startswith("make up"), readme[fence + 1]
    assert readme[fence + 2].startswith("make test"), readme[fence + 2]
    assert readme[fence + 3] == "```", "exactly two set-up commands"
    assert fence < 3, "the commands come first"


FAKE_PULUMI = """\
import json, os, sys
from pathlib import Path

import yaml

args = sys.argv[1:]
with open(os.environ["FAKE_PULUMI_LOG"], "a") as log:
    log.write(" ".join(args) + "\\n")


def option(name):
    return args[args.index(name) + 1] if name in args else None


if args[:2] == ["stack", "select"] and "--create" in args:
    # As the real CLI does when it creates a stack with the passphrase provider (CreateStack in
    # pkg/cmd/pulumi/stack/io.go): it adds the salt to the stack settings file of the project it runs in.
    project_dir = Path(option("--cwd") or os.getcwd())
    project = yaml.safe_load((project_dir / "Pulumi.yaml").read_text())
    settings = project_dir / project.get("stackConfigDir", ".") / "Pulumi.local.yaml"
    text = settings.read_text() if settings.exists() else ""
    if "encryptionsalt:" not in text:
        settings.write_text(text + "encryptionsalt: v1:fake-salt\\n")
elif args[:1] == ["up"]:
    # The program's part: store TLS material in the emulator's SSM at the endpoint the settings name.
    settings_file = Path(option("--config-file"))
    Path(os.environ["FAKE_PULUMI_LOG"] + ".up-settings.yaml").write_text(settings_file.read_text())
    config = yaml.safe_load(settings_file.read_text())["config"]
    sys.path.insert(0, os.environ["FAKE_PULUMI_ROOT"])
    import boto3
    from components.local.tls import make_pki

    pki = make_pki(Path(os.environ["FAKE_PULUMI_LOG"] + ".pki"), dns_names=("localhost",))
    ssm = boto3.client("ssm", endpoint_url=config["pca-backend:awsEndpointUrl"], region_name=config["aws:region"])
    for name, path in (("full-chain", pki.fullchain), ("private-key", pki.leaf_key), ("ca-bundle", pki.ca_bundle)):
        value = path.read_text()
        ssm.put_parameter(Name=f"/pca-backend/local/{name}", Value=value, Type="SecureString", Overwrite=True)
elif args[:2] == ["stack", "output"] and "parameterNames" in args:
    keys = ("full_chain", "private_key", "ca_bundle")
    print(json.dumps({key: f"/pca-backend/local/{key.replace('_', '-')}" for key in keys}))
elif args[:1] == ["destroy"]:
    sys.exit(int(os.environ.get("FAKE_DESTROY_STATUS", "0")))
"""


def make_down(tmp_path: Path, pulumi: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return run_make(tmp_path, "down", f"PULUMI={pulumi}", env=env, timeout=120)


def fake_pulumi(tmp_path: Path) -> Path:
    pulumi = tmp_path / "pulumi"
    pulumi.write_text(f"#!{sys.executable}\n{FAKE_PULUMI}")
    pulumi.chmod(0o755)
    return pulumi


def test_make_down_with_nothing_up_says_so_and_claims_nothing(tmp_path: Path) -> None:
    result = make_down(tmp_path, fake_pulumi(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        "no local backend was running",
        f"no local stack state in {tmp_path / 'state'}: nothing to destroy",
        "no AWS emulator started by make up was running",
    ]
    assert not (tmp_path / "pulumi.log").exists(), "nothing to destroy, so pulumi is not run"


def test_make_down_stops_and_destroys_what_make_up_started(tmp_path: Path) -> None:
    local = tmp_path / "local"
    local.mkdir()
    (tmp_path / "state").mkdir()
    backend = subprocess.Popen(["sleep", "300"])
    emulator = subprocess.Popen(["sleep", "300"])
    try:
        (local / "backend.pid").write_text(f"{backend.pid}\n")
        (local / "emulator.pid").write_text(f"{emulator.pid}\n")
        result = make_down(tmp_path, fake_pulumi(tmp_path))
        assert result.returncode == 0, result.stderr
        assert backend.wait(timeout=10) is not None
        assert emulator.wait(timeout=10) is not None
    finally:
        backend.kill()
        emulator.kill()
    assert result.stdout.splitlines() == [
        f"stopped the local backend (pid {backend.pid})",
        f"destroyed the local stack (its state stays in {tmp_path / 'state'})",
        f"stopped the AWS emulator (pid {emulator.pid})",
    ], result.stdout
    calls = (tmp_path / "pulumi.log").read_text().splitlines()
    settings = tmp_path / "local" / "stack" / "Pulumi.local.yaml"
    assert calls == [
        "stack select --non-interactive local",
        f"destroy --yes --non-interactive --stack local --config-file {settings}",
    ]
    assert settings.is_file(), "destroy reads the local stack's rendered settings, never the tracked file"
    assert not (local / "backend.pid").exists()
    assert not (local / "emulator.pid").exists()


def test_make_down_fails_and_says_so_when_the_stack_was_not_destroyed(tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    result = make_down(tmp_path, fake_pulumi(tmp_path), FAKE_DESTROY_STATUS="1")
    assert result.returncode != 0
    assert "the local stack was NOT destroyed" in result.stderr, result.stderr
    assert "destroyed the local stack" not in result.stdout, result.stdout

    missing = make_down(tmp_path, tmp_path / "no-such-pulumi")
    assert missing.returncode != 0
    assert "is not installed: the local stack was NOT destroyed" in missing.stderr, missing.stderr


def test_make_lint_runs_mypy_once_over_the_program_scripts_and_examples() -> None:
    make = shutil.which("make")
    assert make, "make is required"
    dry_run = subprocess.run(
        [make, "-n", "-C", str(ROOT), "lint"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    # The one run at the project's Python; the host scripts get a second check at 3.9 (test_host_python_floor).
    (mypy,) = [line for line in dry_run.splitlines() if " mypy " in f"{line} " and "--python-version" not in line]
    words = mypy.split()
    assert "." in words, mypy
    for program in [*(ROOT / "scripts").iterdir(), *(ROOT / "examples").glob("*/__main__.py")]:
        assert str(program.relative_to(ROOT)) in words, f"{program.name} is not type-checked: {mypy}"


def readme_commands() -> list[str]:
    """Every command the README shows: lines of its ```sh blocks (continuations joined) and inline code."""
    text = (ROOT / "README.md").read_text()
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, flags=re.DOTALL):
        for line in block.replace("\\\n", " ").splitlines():
            command = line.split("  #")[0].strip()
            if command:
                commands.append(command)
    commands += re.findall(r"`([^`\n]+)`", text)
    return commands


def test_readme_commands_work_after_the_set_up_without_uv_on_path() -> None:
    # `make` installs uv privately when it is not on PATH, so a README command that starts with uv would fail.
    commands = readme_commands()
    assert not [command for command in commands if command.startswith("uv ")], "uv may not be on PATH"
    without_uv = os.pathsep.join(
        directory for directory in os.environ["PATH"].split(os.pathsep) if not (Path(directory) / "uv").exists()
    )
    programs = sorted({command.split()[1] for command in commands if command.startswith(".venv/bin/python ")})
    assert "scripts/local-backend" in programs, programs
    for program in programs:
        assert (ROOT / program).is_file(), f"the README runs {program}, which does not exist"
        result = subprocess.run(
            [str(ROOT / ".venv" / "bin" / "python"), program, "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PATH": without_uv},
            check=False,
        )
        assert result.returncode == 0, f"{program} --help: {result.stderr}"


def test_readme_cites_only_files_the_project_has() -> None:
    cited = {
        token
        for command in readme_commands()
        for token in command.split()
        # A path (dir/file.ext) or a document (*.md); bare names like backend.json are files the commands write.
        if re.fullmatch(r"[\w.-]*/[\w./-]+\.(md|py|ya?ml|toml|json)|[\w.-]+\.md", token)
    }
    assert "components/certificate.py" in cited, cited
    missing = sorted(token for token in cited if not (ROOT / token).exists())
    assert not missing, f"the README cites files the project does not have: {missing}"


# --- make up: what it needs, and the Pulumi CLI's installer ------------------------------------------------


def run_make(
    tmp_path: Path, target: str, *variables: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`make -s TARGET` with this test's directories and the uv `make python-deps` already installed."""
    make = shutil.which("make")
    assert make, "make is required"
    return subprocess.run(
        [
            make,
            "-s",
            "-C",
            str(ROOT),
            target,
            f"UV={uv_binary()}",
            f"LOCAL_DIR={tmp_path / 'local'}",
            f"STATE_DIR={tmp_path / 'state'}",
            *variables,
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={
            **os.environ,
            "FAKE_PULUMI_LOG": str(tmp_path / "pulumi.log"),
            "FAKE_PULUMI_ROOT": str(ROOT),
            **(env or {}),
        },
        check=False,
    )


def path_without(*commands: str) -> str:
    """PATH without the directories that hold any of `commands`."""
    return os.pathsep.join(
        directory
        for directory in os.environ["PATH"].split(os.pathsep)
        if not any((Path(directory) / command).exists() for command in commands)
    )


def makefile_variable(name: str) -> str:
    (value,) = re.findall(rf"^{name}\s*\?=\s*(\S+)", (ROOT / "Makefile").read_text(), flags=re.MULTILINE)
    return value


def test_make_up_installs_the_pinned_cli_and_shows_the_installers_own_error(tmp_path: Path) -> None:
    installer = tmp_path / "install.sh"
    installer.write_text(
        f'echo "$@" > {tmp_path / "installer-args"}\n'
        'echo "error: could not download pulumi-v3-linux-x64.tar.gz: no network" >&2\n'
        "exit 3\n"
    )
    result = run_make(
        tmp_path,
        "up",
        f"PULUMI={tmp_path / 'no-pulumi'}",
        f"PULUMI_INSTALLER=file://{installer}",
        env={"PATH": path_without("pulumi")},
    )
    assert result.returncode != 0, result.stdout
    assert "could not install the Pulumi CLI: its installer failed:" in result.stderr, result.stderr
    assert "  error: could not download pulumi-v3-linux-x64.tar.gz: no network" in result.stderr, result.stderr
    version = makefile_variable("PULUMI_VERSION")
    assert (tmp_path / "installer-args").read_text().split() == ["--version", version, "--no-edit-path"]
    assert not (tmp_path / "pulumi.log").exists(), "nothing may be deployed without the CLI"


def test_make_up_installs_the_cli_version_the_program_and_the_workflows_use() -> None:
    (sdk,) = [
        entry["version"]
        for entry in tomllib.loads((ROOT / "uv.lock").read_text())["package"]
        if entry["name"] == "pulumi"
    ]
    assert makefile_variable("PULUMI_VERSION") == sdk, "the CLI make up installs is the SDK's version in uv.lock"


FAKE_APT_GET = """\
#!/bin/sh
echo "$@" >> "$FAKE_APT_LOG"
if [ "$1" = install ]; then
  printf '#!/bin/sh\\nexit 0\\n' > "$FAKE_BIN/nginx" && chmod +x "$FAKE_BIN/nginx"
fi
"""


def test_make_up_installs_nginx_it_needs_before_anything_else(tmp_path: Path) -> None:
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    (fake_bin / "apt-get").write_text(FAKE_APT_GET)
    (fake_bin / "apt-get").chmod(0o755)
    result = run_make(
        tmp_path,
        "up",
        "SBIN_DIRS=",
        f"PULUMI={tmp_path / 'no-pulumi'}",
        "PULUMI_INSTALLER=http://127.0.0.1:9/",
        env={
            "PATH": f"{fake_bin}{os.pathsep}{path_without('nginx', 'pulumi')}",
            "FAKE_APT_LOG": str(tmp_path / "apt.log"),
            "FAKE_BIN": str(fake_bin),
        },
    )
    apt = (tmp_path / "apt.log").read_text().splitlines()
    assert apt == ["update -qq", "install -y -qq --no-install-recommends nginx-light"], apt
    lines = result.stdout.splitlines()
    assert lines[:2] == [
        "make up needs nginx, which this machine does not have",
        "installing with apt-get: nginx-light",
    ]
    # Then the next step (here the CLI, which cannot be fetched): the requirement came first.
    assert "could not install the Pulumi CLI" in result.stderr, result.stderr


def test_make_up_without_apt_get_names_what_to_install_and_stops(tmp_path: Path) -> None:
    result = run_make(
        tmp_path,
        "up",
        "SBIN_DIRS=",
        "APT_GET=no-such-apt-get",
        f"PULUMI={tmp_path / 'no-pulumi'}",
        env={"PATH": path_without("nginx", "pulumi")},
    )
    assert result.returncode != 0
    assert "make up needs these Debian packages: nginx-light; this machine has no no-such-apt-get" in result.stderr
    assert "Pulumi CLI" not in result.stdout + result.stderr, "nothing else is tried"


# --- the emulator's port --------------------------------------------------------------------------------


def _serve_http(port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_port(port, server)
    return server


def _serve_tcp_that_closes(port: int) -> subprocess.Popen[bytes]:
    code = f"import socket\ns = socket.create_server(('127.0.0.1', {port}))\nwhile True:\n    s.accept()[0].close()\n"
    server = subprocess.Popen([sys.executable, "-c", code])
    wait_for_port(port, server)
    return server


@pytest.mark.parametrize(
    ("server", "says"),
    [(_serve_http, "a server that answers HTTP 404"), (_serve_tcp_that_closes, "not an HTTP server")],
    ids=["http-server", "not-http"],
)
def test_make_emulator_refuses_a_port_something_else_holds(tmp_path: Path, server: Any, says: str) -> None:
    port = free_port()
    other = server(port)
    try:
        result = run_make(tmp_path, "emulator", f"EMULATOR_PORT={port}")
    finally:
        stop_process(other)
    assert result.returncode != 0, result.stdout
    assert f"port {port} (127.0.0.1:{port}) is taken by" in result.stderr, result.stderr
    assert says in result.stderr, result.stderr
    assert "make up EMULATOR_PORT=" in result.stderr, result.stderr
    assert not (tmp_path / "local" / "emulator.pid").exists(), "no emulator was started"


def test_make_emulator_uses_a_moto_that_already_answers(tmp_path: Path, moto_endpoint: str) -> None:
    port = urlsplit(moto_endpoint).port
    result = run_make(tmp_path, "emulator", f"EMULATOR_PORT={port}")
    assert result.returncode == 0, result.stderr
    assert f"AWS emulator (moto) already answers on http://127.0.0.1:{port}: using it" in result.stdout
    assert not (tmp_path / "local" / "emulator.pid").exists(), "make down must not stop a moto it did not start"


@pytest.mark.parametrize("port", ["abc", "0", "70000"])
def test_make_emulator_refuses_a_port_that_is_not_one(tmp_path: Path, port: str) -> None:
    result = run_make(tmp_path, "emulator", f"EMULATOR_PORT={port}")
    assert result.returncode != 0
    assert f"EMULATOR_PORT={port}: a TCP port number from 1 to 65535" in result.stderr, result.stderr


# --- make up end to end on another port, with a fake pulumi ----------------------------------------------


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture
def make_up_on_another_port(tmp_path: Path) -> Iterator[tuple[subprocess.CompletedProcess[str], int, int]]:
    """`make up EMULATOR_PORT=<free> BACKEND_PORT=<free>`: yields (the run, emulator port, backend port).

    Afterwards `make down` stops what it started; the test fails if a process it started outlives that."""
    emulator_port, backend_port = free_port(), free_port()
    variables = (f"PULUMI={fake_pulumi(tmp_path)}", f"EMULATOR_PORT={emulator_port}", f"BACKEND_PORT={backend_port}")
    tracked = TRACKED_LOCAL_STACK.read_bytes()
    result = run_make(tmp_path, "up", *variables, env={"PATH": path_without("pulumi")})
    pids = [
        int(path.read_text())
        for path in (tmp_path / "local" / "backend.pid", tmp_path / "local" / "emulator.pid")
        if path.exists()
    ]
    backend_json = tmp_path / "local" / "backend.json"
    if backend_json.exists() and backend_json.read_text().strip():
        pids.append(int(json.loads(backend_json.read_text())["pid"]))  # nginx, which local-backend stops
    try:
        yield result, emulator_port, backend_port
    finally:
        down = run_make(tmp_path, "down", *variables)
        assert down.returncode == 0, down.stdout + down.stderr
        for pid in pids:
            for _ in range(50):
                if not _alive(pid):
                    break
                time.sleep(0.2)
            assert not _alive(pid), f"make down left pid {pid} running"
        after = TRACKED_LOCAL_STACK.read_bytes()
        TRACKED_LOCAL_STACK.write_bytes(tracked)  # a failure must not leave the worktree changed
        assert after == tracked, "stacks/Pulumi.local.yaml must stay as tracked"


def test_make_up_on_another_port_reaches_the_local_stacks_endpoints_and_serves(
    tmp_path: Path, make_up_on_another_port: tuple[subprocess.CompletedProcess[str], int, int]
) -> None:
    result, emulator_port, backend_port = make_up_on_another_port
    assert result.returncode == 0, result.stdout + result.stderr
    stack_dir = tmp_path / "local" / "stack"
    settings = stack_dir / "Pulumi.local.yaml"
    calls = (tmp_path / "pulumi.log").read_text().splitlines()
    assert calls[:3] == [
        f"login --non-interactive file://{tmp_path / 'state'}",
        f"stack select --create --non-interactive local --cwd {stack_dir}",
        f"up --yes --non-interactive --stack local --config-file {settings}",
    ], calls

    # What `pulumi up` was given: the tracked settings with every endpoint on the chosen port.
    given = yaml.safe_load((tmp_path / "pulumi.log.up-settings.yaml").read_text())
    tracked = yaml.safe_load(TRACKED_LOCAL_STACK.read_text())
    url = f"http://127.0.0.1:{emulator_port}"
    endpoints = {service: value for entry in given["config"]["aws:endpoints"] for service, value in entry.items()}
    assert set(endpoints.values()) == {url}, endpoints
    assert given["config"]["pca-backend:awsEndpointUrl"] == url
    unchanged = {key for key in tracked["config"] if key not in {"aws:endpoints", "pca-backend:awsEndpointUrl"}}
    assert {key: given["config"][key] for key in unchanged} == {key: tracked["config"][key] for key in unchanged}
    # The salt the CLI wrote when it created the stack went to the rendered copy, which `up` then reads.
    assert given["encryptionsalt"] == "v1:fake-salt", given

    # The backend serves what the "program" stored in the emulator on that port, verified against its CA.
    ready = json.loads(result.stdout.strip().splitlines()[-1])
    assert ready["url"] == f"https://localhost:{backend_port}/", ready
    context = ssl.create_default_context(cafile=ready["ca_bundle"])
    with urllib.request.urlopen(ready["url"] + "healthz", context=context, timeout=10) as answer:  # noqa: S310
        assert answer.status == 200


def test_make_up_again_keeps_the_salt_and_the_tracked_file(tmp_path: Path) -> None:
    """A second render (another run of `make up`) keeps the salt the CLI wrote; the tracked file stays as is."""
    tracked = TRACKED_LOCAL_STACK.read_bytes()
    first = run_make(tmp_path, "local-config", "EMULATOR_PORT=5001")
    assert first.returncode == 0, first.stderr
    settings = tmp_path / "local" / "stack" / "Pulumi.local.yaml"
    settings.write_text(settings.read_text() + "encryptionsalt: v1:written-by-the-cli\n")
    again = run_make(tmp_path, "local-config", "EMULATOR_PORT=5002")
    assert again.returncode == 0, again.stderr
    rendered = yaml.safe_load(settings.read_text())
    assert rendered["encryptionsalt"] == "v1:written-by-the-cli"
    assert rendered["config"]["pca-backend:awsEndpointUrl"] == "http://127.0.0.1:5002"
    assert TRACKED_LOCAL_STACK.read_bytes() == tracked
    project = yaml.safe_load((tmp_path / "local" / "stack" / "Pulumi.yaml").read_text())
    assert project["name"] == yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["name"]
    assert "stackConfigDir" not in project, "stack files of the copy live beside it, not in the tracked stacks/"


def test_readme_says_what_make_up_needs_and_installs() -> None:
    """The requirement line names what the Makefile checks and installs, and the CLI version it installs."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## Using it locally\n", 1)[1].split("\n## ", 1)[0]
    (commands,) = re.findall(r"^UP_COMMANDS\s*:=\s*(.+)$", (ROOT / "Makefile").read_text(), flags=re.MULTILINE)
    for command in commands.split():
        assert command in section.split("\n\nIt then:", 1)[0], f"the requirement line does not name {command}"
    assert makefile_variable("PULUMI_VERSION") in section, "the README names the CLI version make up installs"
    assert "make up EMULATOR_PORT=" in section, "the README says how to move the emulator off a taken port"
    assert "needs only" not in section, "make up needs more than Python and the Pulumi CLI"
