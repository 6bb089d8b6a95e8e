"""claimcheck: an event-driven image pipeline on AWS, using the Claim Check pattern."""
import pulumi

from handlers.names import PROJECT
from infra import settings
from infra.pipeline import ClaimCheckPipeline

config = settings.load()  # refuses, all at once, what cannot work (each stage's problems and capacity's among it)
for warning in settings.warnings(config):  # what works but wastes
    pulumi.log.warn(f"{PROJECT}: {warning}")
pipeline = ClaimCheckPipeline(PROJECT, config)

# By name (handlers.names.StackOutput): what the operator tools (python -m ops) and the local cloud read back.
for name, value in pipeline.outputs.items():
    pulumi.export(name, value)
