"""Signature verification in pure Python: RSA PKCS#1 v1.5 and ECDSA over P-256 and P-384, with SHA-2.

Public data only (a CSR's key and signature), so timing side channels do not matter here; correctness does.
RSA recomputes the whole expected encoding and compares it, rather than parsing the decrypted block
(RFC 8017 section 8.2.2 step 3 "EMSA-PKCS1-v1_5 encoding" then compare), which is what keeps forged
signatures with sloppy padding out. ECDSA follows SEC 1 v2 section 4.1.4 with the curves of FIPS 186-4 D.1.2.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

#: DigestInfo prefixes for EMSA-PKCS1-v1_5 (RFC 8017 section 9.2, note 1), by hash name.
_DIGEST_INFO = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
HASHES = tuple(_DIGEST_INFO)


@dataclass(frozen=True)
class Curve:
    """A short-Weierstrass prime curve y^2 = x^3 + a x + b over GF(p) with base point (gx, gy) of order n."""

    name: str
    p: int
    a: int
    b: int
    gx: int
    gy: int
    n: int

    @property
    def bits(self) -> int:
        return self.n.bit_length()

    def contains(self, x: int, y: int) -> bool:
        """(x, y) is a point of the curve other than the point at infinity. Both curves have cofactor 1, so every
        such point is in the group `n` generates: no further subgroup check is needed."""
        p = self.p
        return 0 <= x < p and 0 <= y < p and (y * y - (x * x * x + self.a * x + self.b)) % p == 0


P256 = Curve(
    "P-256",
    p=0xFFFFFFFF00000001000000000000000000000000FFFFFFFFFFFFFFFFFFFFFFFF,
    a=-3,
    b=0x5AC635D8AA3A93E7B3EBBD55769886BC651D06B0CC53B0F63BCE3C3E27D2604B,
    gx=0x6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296,
    gy=0x4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5,
    n=0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551,
)
P384 = Curve(
    "P-384",
    p=int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEFFFFFFFF0000000000000000FFFFFFFF", 16),
    a=-3,
    b=int("B3312FA7E23EE7E4988E056BE3F82D19181D9C6EFE8141120314088F5013875AC656398D8A2ED19D2A85C8EDD3EC2AEF", 16),
    gx=int("AA87CA22BE8B05378EB1C71EF320AD746E1D3B628BA79B9859F741E082542A385502F25DBF55296C3A545E3872760AB7", 16),
    gy=int("3617DE4A96262C6F5D9E98BF9292DC29F8F41DBD289A147CE9DA3113B5F0B8C00A60B1CE1D7E819D7A431D7C90EA0E5F", 16),
    n=int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16),
)

# Points in Jacobian coordinates (X, Y, Z) standing for (X/Z^2, Y/Z^3); Z == 0 is the point at infinity.
_Jacobian = tuple[int, int, int]
_INFINITY: _Jacobian = (1, 1, 0)


def _double(curve: Curve, point: _Jacobian) -> _Jacobian:
    x, y, z = point
    if z == 0 or y == 0:
        return _INFINITY
    p = curve.p
    yy = y * y % p
    s = 4 * x * yy % p
    zz = z * z % p
    m = (3 * x * x + curve.a * zz * zz) % p
    x3 = (m * m - 2 * s) % p
    return x3, (m * (s - x3) - 8 * yy * yy) % p, 2 * y * z % p


def _add(curve: Curve, first: _Jacobian, second: _Jacobian) -> _Jacobian:
    if first[2] == 0:
        return second
    if second[2] == 0:
        return first
    p = curve.p
    x1, y1, z1 = first
    x2, y2, z2 = second
    z1z1, z2z2 = z1 * z1 % p, z2 * z2 % p
    u1, u2 = x1 * z2z2 % p, x2 * z1z1 % p
    s1, s2 = y1 * z2 * z2z2 % p, y2 * z1 * z1z1 % p
    if u1 == u2:
        return _double(curve, first) if s1 == s2 else _INFINITY
    h = (u2 - u1) % p
    r = (s2 - s1) % p
    hh = h * h % p
    hhh = h * hh % p
    v = u1 * hh % p
    x3 = (r * r - hhh - 2 * v) % p
    return x3, (r * (v - x3) - s1 * hhh) % p, h * z1 * z2 % p


def _combined(curve: Curve, u1: int, u2: int, qx: int, qy: int) -> tuple[int, int] | None:
    """u1*G + u2*Q in affine coordinates (None for the point at infinity), by Shamir's simultaneous ladder."""
    g: _Jacobian = (curve.gx, curve.gy, 1)
    q: _Jacobian = (qx, qy, 1)
    both = _add(curve, g, q)
    result = _INFINITY
    for bit in range(max(u1.bit_length(), u2.bit_length()) - 1, -1, -1):
        result = _double(curve, result)
        pick = ((u1 >> bit) & 1, (u2 >> bit) & 1)
        if pick == (1, 1):
            result = _add(curve, result, both)
        elif pick == (1, 0):
            result = _add(curve, result, g)
        elif pick == (0, 1):
            result = _add(curve, result, q)
    x, y, z = result
    if z == 0:
        return None
    p = curve.p
    z_inverse = pow(z, -1, p)
    zz = z_inverse * z_inverse % p
    return x * zz % p, y * zz * z_inverse % p


def verify_ecdsa(curve: Curve, qx: int, qy: int, r: int, s: int, message: bytes, hash_name: str) -> bool:
    """Whether (r, s) is an ECDSA signature of `message` under the public point (qx, qy) of `curve`."""
    n = curve.n
    if not (0 < r < n and 0 < s < n) or not curve.contains(qx, qy):
        return False
    digest = hashlib.new(hash_name, message).digest()
    e = int.from_bytes(digest, "big")
    excess = len(digest) * 8 - curve.bits
    if excess > 0:
        e >>= excess  # the leftmost bits of the hash, as many as n has (SEC 1 v2 section 4.1.4 step 5)
    w = pow(s, -1, n)
    point = _combined(curve, e * w % n, r * w % n, qx, qy)
    return point is not None and point[0] % n == r


def verify_rsa_pkcs1v15(modulus: int, exponent: int, signature: bytes, message: bytes, hash_name: str) -> bool:
    """Whether `signature` is an RSASSA-PKCS1-v1_5 signature of `message` under (modulus, exponent)."""
    size = (modulus.bit_length() + 7) // 8
    digest_info = _DIGEST_INFO[hash_name] + hashlib.new(hash_name, message).digest()
    if len(signature) != size or size < len(digest_info) + 11:
        return False
    value = int.from_bytes(signature, "big")
    if value >= modulus:
        return False
    expected = b"\x00\x01" + b"\xff" * (size - len(digest_info) - 3) + b"\x00" + digest_info
    return hmac.compare_digest(pow(value, exponent, modulus).to_bytes(size, "big"), expected)
