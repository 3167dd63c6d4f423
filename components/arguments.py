"""Checks of component arguments, shared by the backend's components (load balancer, host fleet, key delivery).

Each check raises ValueError naming the argument and what is allowed; `Problems` runs several and reports every
problem at once, before a component registers anything. Values that are Outputs (not known until deployment) are
left for AWS to check. The rules themselves (shapes, ranges) live in `components/rules`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import pulumi

from components.rules import aws as aws_rules

_T = TypeVar("_T")


class ArgumentsError(pulumi.RunError, ValueError):
    """A component's arguments are wrong; the message lists each problem with what is allowed.

    A `pulumi.RunError`, so `pulumi preview` prints the message alone, without a traceback.
    """

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("; ".join(problems))


class Problems:
    """Runs checks and keeps every problem they raise instead of stopping at the first."""

    def __init__(self) -> None:
        self.found: list[str] = []

    def collect(self, check: Callable[[], _T]) -> _T:
        """The check's result; on ValueError the problem is kept and None returned (the caller raises before
        using it: see `raise_if_any`)."""
        try:
            return check()
        except ValueError as error:
            self.found.extend(error.problems if isinstance(error, ArgumentsError) else [str(error)])
            return None  # type: ignore[return-value]

    def raise_if_any(self) -> None:
        if self.found:
            # The same argument checked by two components is reported once.
            raise ArgumentsError(list(dict.fromkeys(self.found)))


def missing(args: Mapping[str, Any], required: tuple[str, ...], what: str) -> None:
    absent = [key for key in required if args.get(key) is None]
    if absent:
        raise ValueError(f"{what} is missing required argument(s): {', '.join(absent)}")


def is_plain_list(value: object) -> bool:
    return isinstance(value, list | tuple)


def check_bool(args: Mapping[str, Any], key: str, default: bool | None = None) -> bool:
    value = args.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be True or False, got {value!r}")
    return value


def check_int(args: Mapping[str, Any], key: str, low: int, high: int, default: int | None = None) -> int:
    value = args.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{key} must be an integer from {low} to {high}, got {value!r}")
    return value


def check_id_list(key: str, value: object, *, minimum: int, prefix: str, kind: str) -> None:
    """Checks a plain list of EC2 IDs (`prefix` without the dash, as settings do); a list that is an Output, or
    an entry that is one (not known until deployment), is checked by AWS at deployment."""
    if isinstance(value, str):
        raise ValueError(f"{key} must be a list of ids, got the string {value!r}")
    if not is_plain_list(value):
        return
    if len(value) < minimum:  # type: ignore[arg-type]
        raise ValueError(f"{key} must list at least {minimum} id(s), got {value!r}")
    for item in value:  # type: ignore[attr-defined]
        if isinstance(item, str) and not aws_rules.is_resource_id(item, prefix):
            raise ValueError(f"{key} entry {item!r} must be {kind} ({aws_rules.resource_id_allowed(prefix)})")


def check_vpc_id(args: Mapping[str, Any]) -> None:
    vpc_id = args["vpc_id"]
    if isinstance(vpc_id, str) and not aws_rules.is_resource_id(vpc_id, "vpc"):
        raise ValueError(f"vpc_id must be a VPC id of {aws_rules.resource_id_allowed('vpc')}, got {vpc_id!r}")


def check_arn(key: str, value: object, rule: Callable[[object], bool], example: str) -> None:
    """A plain string must pass `rule`; an Output is checked by AWS at deployment."""
    if isinstance(value, str) and not rule(value):
        raise ValueError(f"{key} must be an ARN such as {example!r}, got {value!r}")


def check_pem(key: str, value: object, marker: str) -> None:
    if isinstance(value, str) and marker not in value:
        raise ValueError(f"{key} must be PEM text containing {marker!r}")


def check_backend_port(args: Mapping[str, Any]) -> int:
    return check_int(args, "backend_port", 1, 65535)


def check_health_check_path(args: Mapping[str, Any]) -> str:
    path = args["health_check_path"]
    problem = aws_rules.health_check_path_problem(path)
    if problem is not None:
        raise ValueError(f"health_check_path {problem}")
    return str(path)


def check_tags(args: Mapping[str, Any]) -> dict[str, str]:
    tags = args["tags"]
    problems = aws_rules.tag_problems(tags)
    if problems:
        raise ValueError("tags " + "; ".join(problems))
    return dict(tags)


def tagged(tags: Mapping[str, str], resource_name: str, **extra: str) -> dict[str, str]:
    """Tags of one resource: the component's, `extra`, and `Name` = the resource's name."""
    return {**tags, **extra, "Name": resource_name}
