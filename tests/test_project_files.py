"""`Pulumi.yaml` and every `stacks/Pulumi.*.yaml`: well-formed, typed, known keys only, and valid settings.

What the `aws:` namespace accepts is read from the installed pulumi-aws package: the provider's config getters in
`pulumi_aws/config/vars.py` (`__config__.get_bool('s3UsePathStyle')` and the like) name every provider setting in
camelCase with its type, and `pulumi_aws/config/outputs.py` (`class Endpoints`) names every endpoint. The files are
parsed with `ast`, not imported: importing `pulumi_aws.config.vars` on its own fails on a circular import, and the
getter names are the wire names, so no snake_case to camelCase guessing is needed.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import subprocess
import zipfile
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pulumi_aws
import pytest
import yaml

from components.settings import CONFIG_KEYS, SettingsError, parse_settings
from tests.project_tools import uv_binary

ROOT = Path(__file__).resolve().parent.parent
PROJECT_FILE = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
PROJECT = PROJECT_FILE["name"]
DECLARED: dict[str, dict[str, Any]] = PROJECT_FILE.get("config", {})
STACK_FILES = sorted((ROOT / "stacks").glob("Pulumi.*.yaml"))
STACKS = [path.name[len("Pulumi.") : -len(".yaml")] for path in STACK_FILES]
#: Top-level keys Pulumi reads from a stack settings file.
STACK_FILE_KEYS = {"config", "secretsprovider", "encryptedkey", "encryptionsalt", "environment"}
SCALAR_TYPES: dict[str, type] = {"string": str, "integer": int, "boolean": bool}
LOCAL_HOST = "127.0.0.1"
#: The emulator accepts any credentials; the local stack's are this documented dummy, never a real key.
EMULATOR_DUMMY_CREDENTIAL = "test"
#: Provider settings that hold credentials.
AWS_CREDENTIAL_KEYS = {"accessKey", "secretKey", "token", "profile", "sharedCredentialsFiles"}
#: `aws.<module>` and `aws.<invoke>` the program uses, to the endpoint(s) that serve them where the name differs;
#: None for invokes answered without a call (partition and region come from the provider's own config).
ENDPOINT_OF: dict[str, str | tuple[str, ...] | None] = {
    "lb": "elbv2",
    "vpc": "ec2",
    # `aws.cloudwatch` holds alarms (CloudWatch) and log groups (CloudWatch Logs).
    "cloudwatch": ("cloudwatch", "logs"),
    "lambda_": "lambda",
    "get_availability_zones_output": "ec2",
    "get_caller_identity_output": "sts",
    "get_partition_output": None,
    "get_region_output": None,
}
#: sha256 of the Apache Software Foundation's LICENSE-2.0.txt (the file pulumi/actions ships as LICENSE).
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


def _is_type(value: Any, type_name: str) -> bool:
    expected = SCALAR_TYPES[type_name]
    # YAML's `true` is a Python bool, and bool is an int: an integer setting must not accept it.
    return isinstance(value, expected) and (expected is bool or not isinstance(value, bool))


def _value_problem(key: str, value: Any) -> str | None:
    """Why `value` does not fit the type Pulumi.yaml declares for `key`, or None."""
    spec = DECLARED[key]
    if spec["type"] == "array":
        if not isinstance(value, list):
            return f"{key}: {value!r} is not a list"
        item_type = spec["items"]["type"]
        bad = [item for item in value if not _is_type(item, item_type)]
        return f"{key}: items {bad!r} are not {item_type}" if bad else None
    return None if _is_type(value, spec["type"]) else f"{key}: {value!r} is not a {spec['type']}"


def _getter_calls(path: Path) -> dict[str, str]:
    """`{'s3UsePathStyle': 'get_bool', ...}` for every `__config__.get*('<name>')` in a generated config module."""
    found: dict[str, str] = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id == "__config__"
            and node.func.attr.startswith("get")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found[node.args[0].value] = node.func.attr
    return found


@cache
def aws_provider_settings() -> dict[str, str]:
    """Every `aws:` config key of the installed pulumi-aws, with the getter (and so the type) it is read with."""
    settings = _getter_calls(Path(pulumi_aws.__file__).parent / "config" / "vars.py")
    assert {"region", "endpoints", "s3UsePathStyle", "skipCredentialsValidation"} <= set(settings), (
        "pulumi_aws/config/vars.py changed shape: update aws_provider_settings()"
    )
    return settings


@cache
def aws_endpoint_names() -> set[str]:
    """The service names `aws:endpoints` accepts: `pulumi.get(self, "<name>")` in `class Endpoints`, and the wire
    name of a getter whose Python name differs (`@pulumi.getter(name="lambda")` on `lambda_`)."""
    tree = ast.parse((Path(pulumi_aws.__file__).parent / "config" / "outputs.py").read_text())
    endpoints = next(node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == "Endpoints")
    wire_names = {
        keyword.value.value
        for node in ast.walk(endpoints)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "getter"
        for keyword in node.keywords
        if keyword.arg == "name" and isinstance(keyword.value, ast.Constant) and isinstance(keyword.value.value, str)
    }
    names = wire_names | {
        node.args[1].value
        for node in ast.walk(endpoints)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and len(node.args) == 2
        and isinstance(node.args[1], ast.Constant)
        and isinstance(node.args[1].value, str)
    }
    assert {"acmpca", "elbv2", "s3", "sts"} <= names, "pulumi_aws/config/outputs.py changed shape"
    return names


def stack_file(stack: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text()) or {}


def stack_config(stack: str) -> dict[str, Any]:
    return stack_file(stack).get("config") or {}


def provider_values(stack: str) -> dict[str, Any]:
    """The stack's `aws:` provider settings other than the region, as `load_settings` passes them."""
    return {
        key.partition(":")[2]: value
        for key, value in stack_config(stack).items()
        if key.startswith("aws:") and key != "aws:region"
    }


def project_values(stack: str) -> dict[str, Any]:
    """What `load_settings` sees: Pulumi.yaml's defaults, then the stack's project keys, without the namespace."""
    values = {key: spec["default"] for key, spec in DECLARED.items()}
    for key, value in stack_config(stack).items():
        namespace, _, name = key.partition(":")
        if namespace == PROJECT:
            values[name] = value
    return values


def as_pulumi_hands_them_over(values: dict[str, Any]) -> dict[str, Any]:
    """Scalars as the strings `pulumi.Config.get` returns; lists parsed from their JSON (as `load_settings` does)."""
    handed: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, list):
            handed[key] = json.loads(json.dumps(value))
        elif isinstance(value, bool):
            handed[key] = "true" if value else "false"
        else:
            handed[key] = str(value)
    return handed


def aws_endpoints(stack: str) -> dict[str, str]:
    endpoints: dict[str, str] = {}
    for entry in stack_config(stack).get("aws:endpoints") or []:
        endpoints.update(entry)
    return endpoints


def _walk_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _walk_strings(item)]
    if isinstance(value, list):
        return [text for item in value for text in _walk_strings(item)]
    return []


# --- Pulumi.yaml -------------------------------------------------------------------------------------------


def test_project_runs_python_with_uv_and_reads_stacks_from_stacks_dir() -> None:
    assert PROJECT == "pca-backend"
    assert PROJECT_FILE.get("description"), "Pulumi.yaml: a project description"
    assert PROJECT_FILE["runtime"] == {"name": "python", "options": {"toolchain": "uv", "virtualenv": ".venv"}}
    assert PROJECT_FILE["stackConfigDir"] == "stacks"
    assert STACK_FILES, "stacks/ holds the stack files"
    assert not list(ROOT.glob("Pulumi.*.yaml")), "stack files belong in stacks/ (stackConfigDir), not the root"


def test_declared_config_is_exactly_the_settings_keys() -> None:
    assert set(DECLARED) == set(CONFIG_KEYS), (
        f"only in Pulumi.yaml: {sorted(set(DECLARED) - set(CONFIG_KEYS))}; "
        f"only in CONFIG_KEYS: {sorted(set(CONFIG_KEYS) - set(DECLARED))}"
    )
    assert len(CONFIG_KEYS) == len(set(CONFIG_KEYS)), "CONFIG_KEYS has duplicates"


@pytest.mark.parametrize("key", list(DECLARED))
def test_declared_setting_is_typed_described_and_defaulted(key: str) -> None:
    spec = DECLARED[key]
    assert set(spec) <= {"type", "items", "description", "default"}, f"{key}: unexpected fields {sorted(spec)}"
    assert spec.get("type") in {"string", "integer", "boolean", "array"}, f"{key}: type {spec.get('type')!r}"
    if spec["type"] == "array":
        assert spec.get("items", {}).get("type") in SCALAR_TYPES, f"{key}: arrays need items.type"
    else:
        assert "items" not in spec, f"{key}: items only for arrays"
    assert isinstance(spec.get("description"), str), f"{key}: description"
    assert spec["description"].strip(), f"{key}: description"
    assert "default" in spec, f"{key}: a default (every setting is optional in a stack file)"
    assert _value_problem(key, spec["default"]) is None, _value_problem(key, spec["default"])


def test_the_ami_is_chosen_not_read_at_every_up() -> None:
    """hostAmiId is declared and documented as the way to move hosts; nothing says the parameter is re-read."""
    spec = DECLARED["hostAmiId"]
    assert (spec["type"], spec["default"]) == ("string", ""), "optional: empty keeps the first deployment's AMI"
    assert "instance refresh" in spec["description"], spec["description"]
    readme = (ROOT / "README.md").read_text()
    assert "| `hostAmiId` | string |" in readme, "the config reference lists hostAmiId"
    assert "**Rolling to a new AMI.**" in readme, "the operating section says how to move the hosts"
    for text in (readme, DECLARED["amiParameter"]["description"]):
        assert "read at each" not in text, "the AMI is kept, not re-read"
        assert "read at every" not in text, "the AMI is kept, not re-read"


def test_project_defaults_alone_are_valid_for_a_ca_only_stack() -> None:
    values = {key: spec["default"] for key, spec in DECLARED.items()} | {"backendEnabled": False}
    settings = parse_settings(values, stack="any", project=PROJECT, region="us-east-1")
    assert settings.ca.mode == "root"


# --- stack files -------------------------------------------------------------------------------------------


def test_every_stack_file_is_named_after_its_stack() -> None:
    for path in STACK_FILES:
        name = path.name[len("Pulumi.") : -len(".yaml")]
        assert name, f"{path.name}: Pulumi.<stack>.yaml"
        assert "." not in name, f"{path.name}: Pulumi.<stack>.yaml"


@pytest.mark.parametrize("stack", STACKS)
def test_stack_file_keys_are_known(stack: str) -> None:
    document = stack_file(stack)
    assert set(document) <= STACK_FILE_KEYS, (
        f"{stack}: unknown top-level keys {sorted(set(document) - STACK_FILE_KEYS)}"
    )
    config = stack_config(stack)
    assert config, f"{stack}: no config"
    provider_settings = aws_provider_settings()
    for key in config:
        namespace, colon, name = key.partition(":")
        assert colon, f"{stack}: {key!r} needs a namespace ({PROJECT}:{key} or aws:{key})"
        assert namespace in {PROJECT, "aws"}, f"{stack}: {key!r}: only {PROJECT}: and aws: keys are used"
        if namespace == PROJECT:
            assert name in DECLARED, f"{stack}: {key!r} is not declared in Pulumi.yaml's config block"
        else:
            assert name in provider_settings, f"{stack}: {key!r} is not a pulumi-aws provider setting"


@pytest.mark.parametrize("stack", STACKS)
def test_stack_values_have_the_declared_types(stack: str) -> None:
    provider_settings = aws_provider_settings()
    problems = []
    for key, value in stack_config(stack).items():
        namespace, _, name = key.partition(":")
        if isinstance(value, dict) and set(value) == {"secure"}:
            continue  # ciphertext: checked in test_secrets_are_never_in_plain_text
        if namespace == PROJECT and name in DECLARED:
            problems.append(_value_problem(name, value))
        elif namespace == "aws" and provider_settings.get(name) == "get_bool" and not isinstance(value, bool):
            problems.append(f"{key}: {value!r} is not a boolean")
        elif namespace == "aws" and provider_settings.get(name) == "get_int" and not _is_type(value, "integer"):
            problems.append(f"{key}: {value!r} is not an integer")
    assert [problem for problem in problems if problem] == [], stack


@pytest.mark.parametrize("stack", STACKS)
def test_aws_endpoints_name_known_services(stack: str) -> None:
    entries = stack_config(stack).get("aws:endpoints")
    if entries is None:
        return
    assert isinstance(entries, list), f"{stack}: aws:endpoints is a list of service -> URL maps"
    for entry in entries:
        assert isinstance(entry, dict), f"{stack}: aws:endpoints entry {entry!r}"
        unknown = set(entry) - aws_endpoint_names()
        assert not unknown, f"{stack}: aws:endpoints has unknown services {sorted(unknown)}"


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_parses_into_settings(stack: str) -> None:
    region = stack_config(stack).get("aws:region")
    try:
        settings = parse_settings(
            project_values(stack), stack=stack, project=PROJECT, region=region, aws=provider_values(stack)
        )
    except SettingsError as error:
        pytest.fail(f"{stack}: {error}")
    assert settings.region == region


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_parses_from_the_strings_pulumi_hands_over(stack: str) -> None:
    values = as_pulumi_hands_them_over(project_values(stack))
    region = stack_config(stack).get("aws:region")
    aws = provider_values(stack)
    from_strings = parse_settings(values, stack=stack, project=PROJECT, region=region, aws=aws)
    assert from_strings == parse_settings(project_values(stack), stack=stack, project=PROJECT, region=region, aws=aws)


def test_a_short_lived_stack_may_leave_cert_validity_to_its_default() -> None:
    values = {key: spec["default"] for key, spec in DECLARED.items()} | {
        "caUsageMode": "SHORT_LIVED_CERTIFICATE",
        "networkCidr": "10.42.0.0/24",
        "albIngressCidrs": ["10.42.0.0/24"],
        "albCertificateArn": "arn:aws:acm:us-east-1:123456789012:certificate/aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee",
        "parameterWriterArns": ["arn:aws:iam::123456789012:role/deploy"],
    }
    settings = parse_settings(values, stack="short", project=PROJECT, region="us-east-1")
    assert settings.certificate is not None
    assert settings.certificate.validity_days == 7


def test_local_stack_talks_only_to_the_emulator() -> None:
    config = stack_config("local")
    endpoints = aws_endpoints("local")
    assert endpoints, "local: aws:endpoints"
    for service, url in endpoints.items():
        assert urlparse(url).hostname == LOCAL_HOST, f"local: aws:endpoints {service} -> {url}"
    assert urlparse(config["pca-backend:awsEndpointUrl"]).hostname == LOCAL_HOST
    for flag in ("skipCredentialsValidation", "skipRequestingAccountId", "s3UsePathStyle"):
        assert config.get(f"aws:{flag}") is True, f"local: aws:{flag} must be true"
    for key in AWS_CREDENTIAL_KEYS & {name.partition(":")[2] for name in config if name.startswith("aws:")}:
        assert config[f"aws:{key}"] == EMULATOR_DUMMY_CREDENTIAL, f"local: aws:{key} must be the emulator's dummy"


def test_local_stack_has_an_endpoint_for_every_service_the_program_calls() -> None:
    """A service without a local endpoint would send the local stack's calls to real AWS."""
    sources = [ROOT / "__main__.py", *sorted((ROOT / "components").glob("*.py"))]
    # `aws.<module>` in code; not `docs.aws.amazon.com` in a comment's URL.
    used = {match for path in sources for match in re.findall(r"(?<![\w./-])aws\.([a-z0-9_]+)\b", path.read_text())}
    services: set[str] = set()
    for name in used:
        endpoint = ENDPOINT_OF.get(name, name)
        services.update((endpoint,) if isinstance(endpoint, str) else endpoint or ())
    assert services - set(aws_endpoints("local")) == set(), f"local: no endpoint for {sorted(services)}"


@pytest.mark.parametrize("stack", [stack for stack in STACKS if stack != "local"])
def test_aws_stacks_use_real_endpoints_and_no_keys(stack: str) -> None:
    config = stack_config(stack)
    assert "aws:endpoints" not in config, f"{stack}: endpoint overrides are for the local stack only"
    assert not config.get("pca-backend:awsEndpointUrl"), f"{stack}: awsEndpointUrl is for the local stack only"
    for key in AWS_CREDENTIAL_KEYS:
        assert f"aws:{key}" not in config, f"{stack}: aws:{key}: credentials come from the environment"
    for flag in ("skipCredentialsValidation", "skipRequestingAccountId", "skipMetadataApiCheck"):
        assert not config.get(f"aws:{flag}"), f"{stack}: aws:{flag} is for the emulator"


@pytest.mark.parametrize("stack", STACKS)
def test_secrets_are_never_in_plain_text(stack: str) -> None:
    text = (ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text()
    assert "PRIVATE KEY" not in text, f"{stack}: a private key in a stack file"
    for key, value in stack_config(stack).items():
        if isinstance(value, dict) and "secure" in value:
            assert set(value) == {"secure"}, f"{stack}: {key}: a secure value has only the ciphertext"
            ciphertext = value["secure"]
            assert isinstance(ciphertext, str), f"{stack}: {key}: secure holds ciphertext"
            assert ciphertext, f"{stack}: {key}: secure holds ciphertext"
            assert not any(c.isspace() for c in ciphertext), f"{stack}: {key}: not ciphertext"
            assert "BEGIN" not in ciphertext, f"{stack}: {key}: not ciphertext"
            continue
        name = key.partition(":")[2]
        secret_like = name in AWS_CREDENTIAL_KEYS - {"profile", "sharedCredentialsFiles"} or any(
            word in name.lower() for word in ("secret", "password", "token", "privatekey")
        )
        if secret_like:
            assert stack == "local", f"{stack}: {key} in plain text: use `pulumi config set --secret`"
            assert value == EMULATOR_DUMMY_CREDENTIAL, f"local: {key} in plain text is only the emulator's dummy"
        for text_value in _walk_strings(value):
            assert "PRIVATE KEY" not in text_value, f"{stack}: {key} holds a private key"


@pytest.mark.parametrize("path", [".state/", ".local/"])
def test_local_state_is_ignored_by_git(path: str) -> None:
    probe = f"{path}probe.json"
    ignored = subprocess.run(["git", "check-ignore", "-q", probe], cwd=ROOT, check=False)
    assert ignored.returncode == 0, f".gitignore must ignore {path}"


# --- packaging and the ecosystem's files -------------------------------------------------------------------


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel `uv build` makes of this project (offline: hatchling is cached by the project's own sync)."""
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [uv_binary(), "build", "--wheel", "--offline", "--quiet", "--out-dir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    (path,) = out.glob("*.whl")
    return zipfile.ZipFile(path)


def test_the_wheel_ships_py_typed_so_type_checkers_read_the_components(wheel: zipfile.ZipFile) -> None:
    assert (ROOT / "components" / "py.typed").is_file()
    names = wheel.namelist()
    assert "components/py.typed" in names, names
    assert "components/certificate.py" in names, names


def test_the_project_is_apache_2_licensed_with_the_full_text(wheel: zipfile.ZipFile) -> None:
    text = (ROOT / "LICENSE").read_text()
    # The Apache Software Foundation's LICENSE-2.0.txt, byte for byte, as pulumi/pulumi and pulumi/actions ship it.
    assert hashlib.sha256(text.encode()).hexdigest() == APACHE_2_SHA256, "LICENSE is not the full Apache-2.0 text"
    metadata = next(name for name in wheel.namelist() if name.endswith(".dist-info/METADATA"))
    headers = wheel.read(metadata).decode().split("\n\n", 1)[0].splitlines()
    assert "License-Expression: Apache-2.0" in headers, headers
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in wheel.namelist()), wheel.namelist()


def test_the_changelog_keeps_an_unreleased_section_on_top_and_the_history_below() -> None:
    text = (ROOT / "CHANGELOG.md").read_text()
    assert text.startswith("# Changelog\n"), text[:80]
    assert "keepachangelog.com" in text, "says which convention it follows"
    sections = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert sections[0] == "Unreleased", sections
    assert any(section.startswith("[0.1.0]") for section in sections), "the first build is listed"
    assert len(sections) >= 3, "what changed since the first build is listed too"
