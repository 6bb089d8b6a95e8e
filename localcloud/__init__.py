"""The local cloud: the unchanged Pulumi program and handlers on one machine.

moto's server (bound to 127.0.0.1) emulates AWS, a Pulumi mocks
implementation creates the program's resources in it, and pollers play the
part of Lambda's SQS event source mappings.
"""
