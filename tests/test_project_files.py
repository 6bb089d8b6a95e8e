"""Pulumi.yaml and every Pulumi.<stack>.yaml, held to the Pulumi CLI's own rules before anything runs.

The CLI validates the project file against its JSON schema (pulumi/pulumi,
sdk/go/common/workspace/project.json) and refuses the whole project when a
config `type` is not one it knows; then it checks each stack value against the
declared type (sdk/go/common/workspace/config.go, ValidateConfigValue). The
rules are written out here, and the schema file itself is used when
../shared/pulumi is beside the project.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from infra import project_file, settings

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = ROOT.parent / "shared" / "pulumi" / "project.schema.json"
# The config types the CLI's project schema accepts ("$defs/simpleConfigType").
CLI_CONFIG_TYPES = {"string", "integer", "boolean", "array", "object"}
# Go's strconv.ParseBool, which the CLI uses for a `boolean` value given as text.
GO_BOOLEANS = {"1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"}


def project() -> dict:
    return yaml.safe_load((ROOT / "Pulumi.yaml").read_text())


def stack_files() -> list[Path]:
    return sorted(ROOT.glob("Pulumi.*.yaml"))


def cli_accepts(declared: dict, value: object) -> bool:
    """Whether the CLI takes `value` for a key declared as `declared` (a stack value is text unless it is a list)."""
    kind = declared["type"]
    if kind == "array":
        return isinstance(value, list) and all(cli_accepts(declared["items"], item) for item in value)
    if isinstance(value, (list, dict)):
        return kind == "object"
    text = str(value).lower() if isinstance(value, bool) else str(value)
    if kind == "integer":
        return re.fullmatch(r"[+-]?[0-9]+", text) is not None  # strconv.Atoi
    if kind == "boolean":
        return text in GO_BOOLEANS
    return kind == "string"


def test_every_declared_config_type_is_one_the_cli_knows():
    config = project()["config"]
    bad = {key: entry.get("type") for key, entry in config.items() if entry.get("type") not in CLI_CONFIG_TYPES}
    assert bad == {}
    for key, entry in config.items():
        if entry["type"] == "array":
            assert entry.get("items", {}).get("type") in CLI_CONFIG_TYPES, key
        assert set(entry) <= {"type", "items", "description", "default", "secret"}, key
        assert "default" in entry, f"{key}: a declared key without a default is required on every stack"
        assert cli_accepts(entry, entry["default"]), f"{key}: the default does not fit its own type"


def test_the_rule_catches_a_number_type():
    # GIVEN the declaration that stopped every `pulumi` command before
    broken = {"minConfidence": {"type": "number", "default": 70}}
    # THEN the rule refuses it, as the CLI does ("could not validate 'Pulumi.yaml'")
    assert {k for k, e in broken.items() if e["type"] not in CLI_CONFIG_TYPES} == {"minConfidence"}


@pytest.mark.skipif(not SCHEMA.is_file(), reason="../shared/pulumi/project.schema.json is not beside the project")
def test_pulumi_yaml_validates_against_the_cli_schema():
    import jsonschema

    schema = json.loads(SCHEMA.read_text())
    jsonschema.validate(project(), schema)
    broken = project()
    broken["config"]["minConfidence"]["type"] = "number"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_pulumi_yaml_is_generated_from_the_settings():
    assert (ROOT / "Pulumi.yaml").read_text() == project_file.render(settings.pulumi_yaml_config()), (
        "Pulumi.yaml is stale: run `python -m infra.settings`")
    assert project()["config"] == settings.pulumi_yaml_config()


def test_the_readme_table_is_generated_from_the_settings():
    readme = project_file.README.read_text()
    assert project_file.readme_with(project_file.readme_table(settings.readme_rows()), readme) == readme, (
        "README.md's configuration table is stale: run `python -m infra.settings`")
    shown = {row[0] for row in settings.readme_rows()}
    assert shown == set(settings.config_keys())  # every key a user may set, and only those


@pytest.mark.parametrize("path", stack_files(), ids=lambda p: p.name)
def test_every_stack_value_fits_its_declared_type_and_the_settings(path):
    declared = project()["config"]
    values = (yaml.safe_load(path.read_text()) or {}).get("config") or {}
    mine = {key.split(":", 1)[1]: value for key, value in values.items() if key.startswith("claimcheck:")}
    for key, value in mine.items():
        assert key in settings.config_keys(), f"{path.name}: {key} is not a setting"
        if key in declared:
            assert cli_accepts(declared[key], value), f"{path.name}: {key} = {value!r} is not a {declared[key]['type']}"
    # The program reads them the way the CLI hands them over: lists as JSON, everything else as text.
    assert settings.stack_config(path) == {k: json.dumps(v) if isinstance(v, (list, dict))
                                           else str(v).lower() if isinstance(v, bool) else str(v) for k, v in mine.items()}
    settings.load_stack(path)


def test_the_stack_rule_refuses_what_the_cli_refuses():
    declared = project()["config"]
    assert not cli_accepts(declared["maxReceiveCount"], "five")
    assert not cli_accepts(declared["minConfidence"], "72.5")
    assert not cli_accepts(declared["thumbnailSizes"], [1024, "big"])
    assert not cli_accepts(declared["storeGps"], "yes")
    assert cli_accepts(declared["storeGps"], True) and cli_accepts(declared["maxReceiveCount"], 5)
