"""The AWS CLI (v1, package `awscli` from PyPI) against the API:
create-rule-set, list-rule-sets, get-rule-set, delete-rule-set, and an
error."""

import importlib.util
import json
import os
import subprocess
import sys
import unittest

import support


def aws(*args):
    """Runs `python3 -m awscli mailmanager ARGS` against the endpoint;
    returns (exit status, stdout, stderr)."""
    env = dict(os.environ, AWS_PAGER="", AWS_DEFAULT_OUTPUT="json")
    done = subprocess.run(
        [sys.executable, "-m", "awscli", "mailmanager", *args, "--endpoint-url", support.ENDPOINT,
         "--region", support.REGION, "--output", "json"],
        capture_output=True, text=True, env=env, timeout=120,
    )
    return done.returncode, done.stdout, done.stderr


class AwsCli(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        if importlib.util.find_spec("awscli") is None:
            self.fail("the AWS CLI is not installed for this Python: python3 -m pip install awscli")

    def run_ok(self, *args):
        status, out, err = aws(*args)
        self.assertEqual(status, 0, f"aws mailmanager {' '.join(args)}:\n{err}")
        return json.loads(out) if out.strip() else {}

    def test_rule_set_round_trip(self):
        name = support.unique("cli")
        rules = [
            {"Name": "archive-invoices",
             "Conditions": [{"StringExpression": {"Evaluate": {"Attribute": "SUBJECT"}, "Operator": "CONTAINS",
                                                  "Values": ["invoice"]}}],
             "Actions": [{"AddHeader": {"HeaderName": "X-Cli", "HeaderValue": "yes"}}, {"Drop": {}}]},
        ]
        created = self.run_ok("create-rule-set", "--rule-set-name", name, "--rules", json.dumps(rules))
        rule_set_id = created["RuleSetId"]
        self.assertRegex(rule_set_id, "^" + support.ID_PATTERNS["mailmanager-rule-set"] + "$")

        listed = self.run_ok("list-rule-sets")
        self.assertIn({"RuleSetId": rule_set_id, "RuleSetName": name},
                      [{k: r[k] for k in ("RuleSetId", "RuleSetName")} for r in listed["RuleSets"]])
        self.assertNotIn("NextToken", listed, "the CLI follows every page")

        got = self.run_ok("get-rule-set", "--rule-set-id", rule_set_id)
        self.assertEqual(got["RuleSetId"], rule_set_id)
        self.assertEqual(got["RuleSetName"], name)
        self.assertEqual(got["RuleSetArn"], support.arn("mailmanager-rule-set", rule_set_id))
        self.assertEqual(got["Rules"], rules)
        self.assertIn("CreatedDate", got)

        self.run_ok("delete-rule-set", "--rule-set-id", rule_set_id)
        status, _, err = aws("get-rule-set", "--rule-set-id", rule_set_id)
        self.assertNotEqual(status, 0)
        self.assertIn("ResourceNotFoundException", err)

    def test_validation_error(self):
        status, _, err = aws("create-rule-set", "--rule-set-name", "bad name!", "--rules", "[]")
        self.assertNotEqual(status, 0)
        self.assertIn("ValidationException", err)
        self.assertIn("RuleSetName", err)
