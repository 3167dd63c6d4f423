"""Pulumi components and pure helpers for a private-CA-encrypted backend on AWS."""
