"""The pca-backend guardrail policy pack; `guardrails` holds the policies."""
