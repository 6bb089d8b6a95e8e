"""Operating a claimcheck stack on day two: python -m ops (see ops/__main__.py)."""
