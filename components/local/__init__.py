"""Local tooling: the AWS emulator, throw-away CAs and TLS helpers for tests, benches and scripts/local-backend; never imported by the Pulumi program."""
