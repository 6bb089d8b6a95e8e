"""What the stack declares for onboarding a bucket, under Pulumi mocks: the backfill function judging with the
intake's settings, and with `batchOperations` the inventory, the role an S3 Batch Operations job assumes (invoke that
function, read the inventory, write the report: nothing else) and the outputs `aws s3control create-job` takes."""
from __future__ import annotations

import json

import pytest

from infra.settings import SettingsError, load
from localcloud import program
from localcloud.outputs import ACCOUNT_ID
from tests.conftest import shared_scope
from tests.infra_helpers import ROLE, as_list, role_policies, statements

INVENTORY = "aws:s3/inventory:Inventory"


@pytest.fixture(scope=shared_scope)
def stack():
    return program.run(program.RecordingMocks(), {"batchOperations": True})


def test_with_batch_operations_the_backfill_function_reserves_its_concurrency_and_is_sized_like_the_intake(stack):
    backfill, intake = stack.functions()["backfill"].inputs, stack.functions()["intake"].inputs
    assert backfill["reservedConcurrentExecutions"] == 10  # a job cannot take the stages' share
    assert backfill["memorySize"] == intake["memorySize"]
    # The intake's time for its batch of 10 messages, for the 100 tasks an invocation may carry.
    assert (intake["timeout"], backfill["timeout"]) == (30, 300)
    assert load({"batchOperations": "true", "accessLogging": "true"}).concurrency.reserved == {"backfill": 10}


def test_without_batch_operations_nothing_is_reserved_for_the_backfill_function():
    plain = program.run(program.RecordingMocks())
    assert "reservedConcurrentExecutions" not in plain.functions()["backfill"].inputs
    assert plain.functions()["backfill"].inputs["memorySize"] == plain.functions()["intake"].inputs["memorySize"]


def test_batch_operations_refuse_an_unreserved_backfill_function():
    with pytest.raises(SettingsError, match=r"backfillConcurrency = 0 is out of range \(accepted: at least 1 with "
                                            r"batchOperations: a job would otherwise invoke"):
        load({"batchOperations": "true", "accessLogging": "true", "backfillConcurrency": "0"})


def test_the_backfill_function_judges_with_the_intake_s_settings(stack):
    functions = stack.functions()
    backfill, intake = functions["backfill"].inputs["environment"]["variables"], functions["intake"].inputs["environment"]["variables"]
    own = {"POWERTOOLS_SERVICE_NAME"}
    assert {k: v for k, v in backfill.items() if k not in own} == {k: v for k, v in intake.items() if k not in own}
    assert stack.outputs["backfillFunctionName"] == functions["backfill"].state["name"]


def test_a_stack_without_batch_operations_declares_no_inventory_and_no_role_a_service_may_assume():
    plain = program.run(program.RecordingMocks())
    assert plain.of_type(INVENTORY) == [] and "batchOperations" not in plain.outputs
    for role in plain.of_type(ROLE):
        assert json.loads(role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}


def test_the_inventory_lists_the_uploads_current_versions_into_the_log_bucket(stack):
    [inventory] = stack.of_type(INVENTORY)
    logs = stack.named("claimcheck-access-logs").state
    uploads = stack.named("claimcheck-uploads").state
    assert inventory.inputs["bucket"] == uploads["bucket"] and inventory.inputs["includedObjectVersions"] == "Current"
    assert inventory.inputs["filter"] == {"prefix": "uploads/"} and inventory.inputs["schedule"] == {"frequency": "Daily"}
    assert inventory.inputs["destination"]["bucket"]["bucketArn"] == logs["arn"]
    assert inventory.inputs["destination"]["bucket"]["format"] == "CSV"
    assert inventory.inputs["destination"]["bucket"]["prefix"] == "inventory"
    # S3 writes it only where the log bucket's policy admits S3 for the uploads bucket of this account
    [policy] = [p for p in stack.of_type("aws:s3/bucketPolicy:BucketPolicy") if p.inputs["bucket"] == logs["bucket"]]
    [admitted] = [s for s in statements(policy) if s.get("Sid") == "S3InventoryOfTheUploadsBucket"]
    assert admitted == {"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "s3:PutObject",
                        "Resource": f"{logs['arn']}/inventory/*",
                        "Condition": {"ArnLike": {"aws:SourceArn": uploads["arn"]},
                                      "StringEquals": {"aws:SourceAccount": ACCOUNT_ID,
                                                       "s3:x-amz-acl": "bucket-owner-full-control"}},
                        "Sid": "S3InventoryOfTheUploadsBucket"}


def test_the_batch_operations_role_invokes_the_backfill_function_reads_the_inventory_and_writes_its_report(stack):
    [role] = [r for r in stack.of_type(ROLE) if r.name == "claimcheck-batch-operations-role"]
    assert json.loads(role.inputs["assumeRolePolicy"])["Statement"] == [{
        "Effect": "Allow", "Principal": {"Service": "batchoperations.s3.amazonaws.com"}, "Action": "sts:AssumeRole",
        "Condition": {"StringEquals": {"aws:SourceAccount": ACCOUNT_ID}}}]
    logs = stack.named("claimcheck-access-logs").state["arn"]
    grants = {action: set(as_list(s["Resource"])) for s in role_policies(stack)[role.state["name"]]
              for action in as_list(s["Action"])}
    assert grants == {"lambda:InvokeFunction": {stack.functions()["backfill"].state["arn"]},
                      "s3:GetObject": {f"{logs}/inventory/*"}, "s3:GetObjectVersion": {f"{logs}/inventory/*"},
                      "s3:PutObject": {f"{logs}/batch-operations/*"}, "s3:GetBucketLocation": {logs}}


def test_the_outputs_hold_what_create_job_takes(stack):
    out = stack.outputs["batchOperations"]
    logs = stack.named("claimcheck-access-logs").state
    uploads = stack.named("claimcheck-uploads").state["bucket"]
    [role] = [r for r in stack.of_type(ROLE) if r.name == "claimcheck-batch-operations-role"]
    assert out == {"accountId": ACCOUNT_ID, "functionArn": stack.functions()["backfill"].state["arn"],
                   "roleArn": role.state["arn"], "reportBucketArn": logs["arn"], "reportPrefix": "batch-operations",
                   "inventoryManifests": f"s3://{logs['bucket']}/inventory/{uploads}/backfill/"}


def test_operators_may_read_the_inventory_lists_and_nothing_else_of_the_log_bucket(stack):
    [policy] = stack.of_type("aws:iam/policy:Policy")
    logs = stack.named("claimcheck-access-logs").state["arn"]
    reads = {r for s in statements(policy) if "s3:GetObject" in as_list(s["Action"]) for r in as_list(s["Resource"])}
    assert {r for r in reads if r.startswith(logs)} == {f"{logs}/inventory/*"}


def test_batch_operations_need_the_log_bucket():
    with pytest.raises(SettingsError, match=r"batchOperations = True is out of range \(accepted: false unless accessLogging is on"):
        load({"batchOperations": "true", "accessLogging": "false"})


def test_the_backfill_reservation_is_counted_with_the_upload_function_s_against_what_lambda_lets_be_reserved():
    with pytest.raises(SettingsError, match=r"uploadApiConcurrency \+ backfillConcurrency = 15 is more than Lambda lets "
                                            r"the account reserve \(accepted: at most accountConcurrency 105 - the 100"):
        load({"batchOperations": "true", "accessLogging": "true", "uploadApi": "true", "accountConcurrency": "105",
              "concurrencyReserve": "0"})
