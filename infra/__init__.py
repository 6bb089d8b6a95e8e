"""The Pulumi side of claimcheck: settings, packaging, IAM and the components."""
