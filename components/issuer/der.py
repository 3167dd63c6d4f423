"""A small, strict DER reader (ITU-T X.690) and PEM decoder: what the issuer needs to read PKCS#10 requests and
the certificates AWS returns, nothing more.

Strict on purpose. The issuer checks the names in a CSR and AWS then reads the same CSR again to build the
certificate: if the two parsers could read one byte string two ways (indefinite or non-minimal lengths, long-form
tags, padded integers), a request could show the issuer one set of names and AWS another. So every encoding
DER allows only one way of is refused in every other way, and nothing may follow the outer element.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

# Universal tags (X.690 section 8), with the constructed bit where the type is always constructed.
BOOLEAN = 0x01
INTEGER = 0x02
BIT_STRING = 0x03
OCTET_STRING = 0x04
NULL = 0x05
OBJECT_IDENTIFIER = 0x06
UTF8_STRING = 0x0C
PRINTABLE_STRING = 0x13
IA5_STRING = 0x16
UTC_TIME = 0x17
GENERALIZED_TIME = 0x18
SEQUENCE = 0x30
SET = 0x31

#: Lengths above this are refused: nothing the issuer reads comes near it, and it bounds what a request can make
#: the reader walk.
MAX_LENGTH = 1 << 20
_PRINTABLE = re.compile(r"[A-Za-z0-9 '()+,\-./:=?]*")


class DerError(ValueError):
    """The bytes are not the strict DER encoding of what was expected."""


@dataclass(frozen=True)
class Element:
    """One DER element: its identifier octet, its content octets and its whole encoding."""

    tag: int
    content: bytes
    encoded: bytes

    def children(self) -> list[Element]:
        """The elements a constructed element (SEQUENCE, SET, explicit tag) holds, in order."""
        if not self.tag & 0x20:
            raise DerError(f"element with tag 0x{self.tag:02x} is primitive, not constructed")
        return read_all(self.content)

    def expect(self, tag: int, what: str) -> Element:
        if self.tag != tag:
            raise DerError(f"{what}: expected tag 0x{tag:02x}, found 0x{self.tag:02x}")
        return self


def _read(data: bytes, offset: int) -> tuple[Element, int]:
    """The element starting at `offset` and the offset just after it."""
    if offset + 2 > len(data):
        raise DerError("truncated element")
    tag = data[offset]
    if tag & 0x1F == 0x1F:
        raise DerError("high tag numbers (multi-byte identifiers) are not used here")
    first = data[offset + 1]
    position = offset + 2
    if first < 0x80:
        length = first
    elif first == 0x80:
        raise DerError("indefinite length (BER) is not DER")
    else:
        count = first & 0x7F
        if count > 4 or position + count > len(data):
            raise DerError("length of length out of range")
        length = int.from_bytes(data[position : position + count], "big")
        if data[position] == 0 or length < 0x80:
            raise DerError("length not in its shortest form")
        position += count
    if length > MAX_LENGTH or position + length > len(data):
        raise DerError("length runs past the end of the data")
    end = position + length
    return Element(tag, data[position:end], data[offset:end]), end


def read_all(data: bytes) -> list[Element]:
    """Consecutive elements filling `data` exactly."""
    elements = []
    offset = 0
    while offset < len(data):
        element, offset = _read(data, offset)
        elements.append(element)
    return elements


def parse(data: bytes) -> Element:
    """Exactly one element, with nothing after it."""
    element, end = _read(data, 0)
    if end != len(data):
        raise DerError(f"{len(data) - end} byte(s) after the outer element")
    return element


def sequence(element: Element, what: str, *, lengths: tuple[int, ...]) -> list[Element]:
    """The children of a SEQUENCE that must have one of `lengths` children."""
    children = element.expect(SEQUENCE, what).children()
    if len(children) not in lengths:
        raise DerError(f"{what}: {len(children)} elements where {' or '.join(map(str, lengths))} are expected")
    return children


def integer(element: Element, what: str) -> int:
    """A minimally encoded INTEGER (two's complement)."""
    content = element.expect(INTEGER, what).content
    if not content:
        raise DerError(f"{what}: empty INTEGER")
    if len(content) > 1 and ((content[0] == 0x00 and content[1] < 0x80) or (content[0] == 0xFF and content[1] >= 0x80)):
        raise DerError(f"{what}: INTEGER not in its shortest form")
    return int.from_bytes(content, "big", signed=True)


def positive_integer(element: Element, what: str) -> int:
    value = integer(element, what)
    if value <= 0:
        raise DerError(f"{what}: must be positive")
    return value


def oid(element: Element, what: str) -> str:
    """An OBJECT IDENTIFIER in dotted form."""
    content = element.expect(OBJECT_IDENTIFIER, what).content
    if not content or content[-1] & 0x80:
        raise DerError(f"{what}: truncated OBJECT IDENTIFIER")
    arcs: list[int] = []
    value = 0
    fresh = True
    for byte in content:
        if fresh and byte == 0x80:
            raise DerError(f"{what}: OBJECT IDENTIFIER arc not in its shortest form")
        value = (value << 7) | (byte & 0x7F)
        fresh = not byte & 0x80
        if fresh:
            arcs.append(value)
            value = 0
    first = min(arcs[0] // 40, 2)
    return ".".join(map(str, [first, arcs[0] - 40 * first, *arcs[1:]]))


def boolean(element: Element, what: str) -> bool:
    content = element.expect(BOOLEAN, what).content
    if content not in (b"\x00", b"\xff"):
        raise DerError(f"{what}: BOOLEAN must be 00 or ff in DER")
    return content == b"\xff"


def null(element: Element, what: str) -> None:
    if element.expect(NULL, what).content:
        raise DerError(f"{what}: NULL with content")


def bit_string_bytes(element: Element, what: str) -> bytes:
    """The bytes of a BIT STRING holding whole octets (keys and signatures)."""
    content = element.expect(BIT_STRING, what).content
    if not content or content[0] != 0:
        raise DerError(f"{what}: BIT STRING must hold whole octets")
    return content[1:]


def text(element: Element, what: str) -> str:
    """A UTF8String, PrintableString or IA5String; other string types are refused."""
    try:
        if element.tag == UTF8_STRING:
            return element.content.decode("utf-8")
        if element.tag == IA5_STRING:
            return element.content.decode("ascii")
        if element.tag == PRINTABLE_STRING:
            value = element.content.decode("ascii")
            if _PRINTABLE.fullmatch(value):
                return value
            raise DerError(f"{what}: character outside PrintableString's alphabet")
    except UnicodeDecodeError:
        raise DerError(f"{what}: string is not valid for its type") from None
    raise DerError(f"{what}: string type 0x{element.tag:02x} is not UTF8String, PrintableString or IA5String")


def time(element: Element, what: str) -> str:
    """A UTCTime or GeneralizedTime as RFC 5280 restricts them (seconds, `Z`), as ISO 8601 UTC."""
    value = element.content.decode("ascii", "replace")
    if element.tag == UTC_TIME and re.fullmatch(r"\d{12}Z", value):
        year = int(value[:2])
        value = f"{1900 + year if year >= 50 else 2000 + year}{value[2:]}"  # RFC 5280 section 4.1.2.5.1
    elif not (element.tag == GENERALIZED_TIME and re.fullmatch(r"\d{14}Z", value)):
        raise DerError(f"{what}: not a UTCTime or GeneralizedTime of the form RFC 5280 requires")
    return f"{value[:4]}-{value[4:6]}-{value[6:8]}T{value[8:10]}:{value[10:12]}:{value[12:14]}Z"


def pem_blocks(pem: str, label: str) -> list[bytes]:
    """The DER of every `label` block in `pem`; text outside the blocks is refused, as are other labels.

    Base64 is decoded strictly (RFC 7468 section 3): only the alphabet, padding and line breaks.
    """
    pattern = re.compile(rf"-----BEGIN {label}-----\r?\n(.*?)\r?\n?-----END {label}-----\r?\n?", re.DOTALL)
    blocks = []
    position = 0
    stripped = pem.strip()
    for match in pattern.finditer(stripped):
        if stripped[position : match.start()].strip():
            raise DerError(f"text outside a {label} block")
        body = re.sub(r"\r?\n", "", match.group(1))
        if not re.fullmatch(r"[A-Za-z0-9+/]*={0,2}", body) or len(body) % 4:
            raise DerError(f"{label} block is not base64")
        try:
            blocks.append(base64.b64decode(body, validate=True))
        except binascii.Error:
            raise DerError(f"{label} block is not base64") from None
        position = match.end()
    if stripped[position:].strip():
        raise DerError(f"text outside a {label} block")
    return blocks


def pem(der: bytes, label: str) -> str:
    """PEM text of `der` (64-character lines, as RFC 7468 writes it)."""
    body = base64.b64encode(der).decode("ascii")
    lines = [body[index : index + 64] for index in range(0, len(body), 64)]
    return f"-----BEGIN {label}-----\n" + "\n".join(lines) + f"\n-----END {label}-----\n"
