"""`HostPayload` and `HostFile`: the data every delivery's host software is described with."""

from __future__ import annotations

import pytest

from components.host_payload import HostFile, HostPayload
from components.x509 import generate_private_key, private_key_pem


def test_a_payload_holds_files_then_commands() -> None:
    payload = HostPayload(
        files=(HostFile("/usr/local/sbin/tool", "0755", "#!/bin/sh\n"), HostFile("/etc/tool.conf", "0644", "x\n")),
        commands=("systemctl daemon-reload",),
    )
    assert [file.path for file in payload.files] == ["/usr/local/sbin/tool", "/etc/tool.conf"]


@pytest.mark.parametrize("path", ["relative/tool", "/usr/local/../sbin/tool", "/usr//tool", "/usr/tool/"])
def test_paths_are_absolute_and_normalised(path: str) -> None:
    with pytest.raises(ValueError, match="absolute and normalised"):
        HostFile(path, "0755", "")


@pytest.mark.parametrize("mode", ["755", "0855", "rwx", "00755"])
def test_modes_are_four_octal_digits(mode: str) -> None:
    with pytest.raises(ValueError, match="four octal digits"):
        HostFile("/etc/tool", mode, "")


def test_key_material_is_never_a_payload_file() -> None:
    with pytest.raises(ValueError, match="key material"):
        HostFile("/etc/key.pem", "0600", private_key_pem(generate_private_key("EC_prime256v1")))


def test_a_path_is_installed_once() -> None:
    with pytest.raises(ValueError, match="/etc/tool more than once"):
        HostPayload(files=(HostFile("/etc/tool", "0644", "a"), HostFile("/etc/tool", "0644", "b")), commands=())
