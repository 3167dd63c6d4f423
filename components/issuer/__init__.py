"""The per-host issuer: an AWS Lambda function that signs a host's CSR after checking, from evidence AWS provides,
that the calling instance belongs to the fleet and that every name it asks for is its own.

Everything in this package runs inside Lambda's managed Python runtime with the standard library and boto3 only
(no `cryptography`): `components/per_host_issuer.py` ships these files, and only these, as the function's code.
Modules import each other relatively, so the package works both as `components.issuer` and as the archive's
top-level `issuer` package.
"""
