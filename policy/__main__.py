"""Policy pack `pca-backend-guardrails`: the security promises of the pca-backend program, enforced.

Run it with `pulumi preview --policy-pack policy` (CI does so for every stack). The policies live in
`guardrails.py` so tests can import them without starting the pack's server, which `PolicyPack` does.
"""

import sys
from pathlib import Path

# Import the policies as `policy.guardrails`, the name tests use, whatever directory Pulumi runs us from.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack

from policy.guardrails import ALL_POLICIES, PACK_NAME

PolicyPack(
    name=PACK_NAME,
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=list(ALL_POLICIES),
)
