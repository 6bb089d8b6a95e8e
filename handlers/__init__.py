"""Lambda handlers for claimcheck: intake, thumbnails and labels.

Each function's archive holds this package with only the modules it needs
(see infra/packaging.py); nothing here imports infra/.
"""
