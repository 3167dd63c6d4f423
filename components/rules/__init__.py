"""Pure rules: what AWS, X.509 and nginx accept, written once.

Settings (`components/settings.py`), the Pulumi components, the certificate provider and the renderers all
import their checks from here, so a setting and the component argument it feeds can never disagree. Nothing in
this package imports boto3, Pulumi or `cryptography`: each rule is a plain function, tested without mocks.

- `aws`: ARN shapes, resource IDs, ACM PCA enums and templates, the short-lived cap, a certificate's renewal
  window, SSM parameter paths, regions, health-check paths, endpoint URLs, tags and security-group rule quotas;
- `names`: DNS names, IP addresses, nginx server names and X.509 subject fields;
- `network`: CIDR blocks and the subnet arithmetic of the isolated network;
- `sizes`: upper bounds on the size of a CSR, a certificate and its chain, against AWS's request and parameter
  limits.

A rule either answers a question (`is_...`) or returns what is wrong (`..._problem`, None when nothing is): the
caller puts the setting's or the argument's name in front, so one rule serves both.
"""
