"""The wire: which protocol each client speaks, and raw requests signed with
SigV4 (service `ses`) sent with urllib: a good one over AWS JSON 1.0 and
over RPC v2 CBOR, and the ones the server must refuse (unsigned, a wrong
secret, an unknown access key, a body changed after signing)."""

import datetime
import json
import unittest
import unittest.mock
import urllib.error
import urllib.request

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

import support

JSON_TYPE = "application/x-amz-json-1.0"


def post(path, body, headers, credentials=None, body_sent=None):
    """POSTs `body` to the API, signed with `credentials` when given (the
    signature covers `body`; `body_sent` goes out instead when given);
    returns (status, headers, body)."""
    request = AWSRequest(method="POST", url=support.ENDPOINT + path, data=body, headers=dict(headers))
    if credentials is not None:
        SigV4Auth(credentials, "ses", support.REGION).add_auth(request)
    prepared = request.prepare()
    http = urllib.request.Request(prepared.url, data=body if body_sent is None else body_sent,
                                  headers=dict(prepared.headers.items()), method="POST")
    try:
        with urllib.request.urlopen(http, timeout=support.WAIT) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def json_call(operation, payload, credentials=None, body_sent=None):
    return post("/", json.dumps(payload).encode(),
                {"X-Amz-Target": f"MailManagerSvc.{operation}", "Content-Type": JSON_TYPE},
                credentials, body_sent)


def text(value):
    return value.decode() if isinstance(value, bytes) else value


def error_type(body):
    """The `__type` of a JSON error body, without a namespace."""
    return json.loads(body)["__type"].rsplit("#", 1)[-1]


class RawRequests(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        frozen = support.credentials()
        self.credentials = Credentials(frozen.access_key, frozen.secret_key, frozen.token)

    def test_signed_json_request(self):
        name = support.unique("raw-json")
        status, headers, body = json_call("CreateRuleSet", {"RuleSetName": name, "Rules": []}, self.credentials)
        self.assertEqual(status, 200, body)
        self.assertEqual(headers.get_content_type(), JSON_TYPE)
        rule_set_id = json.loads(body)["RuleSetId"]

        status, headers, body = json_call("ListRuleSets", {}, self.credentials)
        self.assertEqual(status, 200, body)
        self.assertEqual(headers.get_content_type(), JSON_TYPE)
        self.assertIsInstance(json.loads(body)["RuleSets"], list)

        status, _, body = json_call("GetRuleSet", {"RuleSetId": rule_set_id}, self.credentials)
        self.assertEqual(status, 200, body)
        got = json.loads(body)
        self.assertEqual((got["RuleSetId"], got["RuleSetName"], got["Rules"]), (rule_set_id, name, []))
        # Timestamps are epoch seconds in AWS JSON 1.0.
        self.assertIsInstance(got["CreatedDate"], (int, float))

    def test_json_errors_have_a_type_and_the_model_status(self):
        status, headers, body = json_call("GetRuleSet", {"RuleSetId": support.missing_id("rs-")}, self.credentials)
        self.assertEqual(status, 404, body)
        self.assertEqual(headers.get_content_type(), JSON_TYPE)
        self.assertEqual(error_type(body), "ResourceNotFoundException")

        status, _, body = json_call("CreateRuleSet", {"RuleSetName": "bad name!", "Rules": []}, self.credentials)
        self.assertEqual(status, 400, body)
        self.assertEqual(error_type(body), "ValidationException")
        self.assertIn("RuleSetName", json.loads(body).get("message", json.loads(body).get("Message", "")))

        status, _, body = json_call("NoSuchOperation", {}, self.credentials)
        self.assertEqual(status, 400, body)
        self.assertEqual(error_type(body), "UnknownOperationException")

        status, _, body = post("/", b"{not json", {"X-Amz-Target": "MailManagerSvc.ListRuleSets",
                                                  "Content-Type": JSON_TYPE}, self.credentials)
        self.assertEqual(status, 400, body)
        self.assertEqual(error_type(body), "SerializationException")

    def test_signed_cbor_request(self):
        # An empty CBOR map: ListRuleSets with no parameters.
        status, headers, body = post(
            "/service/MailManagerSvc/operation/ListRuleSets", b"\xa0",
            {"smithy-protocol": "rpc-v2-cbor", "Content-Type": "application/cbor", "Accept": "application/cbor"},
            self.credentials)
        self.assertEqual(status, 200, body)
        self.assertEqual(headers.get_content_type(), "application/cbor")
        self.assertEqual(headers.get("smithy-protocol"), "rpc-v2-cbor")
        self.assertEqual(body[0] >> 5, 5, f"the answer is a CBOR map: {body[:20]!r}")
        self.assertIn(b"RuleSets", body)

    def test_unsigned_request(self):
        status, _, body = json_call("ListRuleSets", {})
        self.assertEqual(status, 403, body)
        self.assertEqual(error_type(body), "MissingAuthenticationTokenException")

    def test_wrong_secret(self):
        wrong = Credentials(self.credentials.access_key, "wrong" + self.credentials.secret_key[5:])
        status, _, body = json_call("ListRuleSets", {}, wrong)
        self.assertEqual(status, 403, body)
        self.assertEqual(error_type(body), "InvalidSignatureException")

    def test_unknown_access_key(self):
        unknown = Credentials("AKIAUNKNOWNPOSTERN00", self.credentials.secret_key)
        status, _, body = json_call("ListRuleSets", {}, unknown)
        self.assertEqual(status, 403, body)
        self.assertEqual(error_type(body), "UnrecognizedClientException")

    def test_stale_signature(self):
        # Signed 20 minutes ago: beyond the 15 minutes of clock skew allowed.
        stale = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None) - datetime.timedelta(minutes=20)
        with unittest.mock.patch("botocore.auth.get_current_datetime", return_value=stale):
            status, _, body = json_call("ListRuleSets", {}, self.credentials)
        self.assertEqual(status, 403, body)
        self.assertEqual(error_type(body), "InvalidSignatureException")

    def test_unreadable_authorization_header(self):
        status, _, body = post("/", b"{}", {"X-Amz-Target": "MailManagerSvc.ListRuleSets", "Content-Type": JSON_TYPE,
                                            "X-Amz-Date": "20260101T000000Z",
                                            "Authorization": "AWS4-HMAC-SHA256 garbage"})
        self.assertEqual(status, 400, body)
        self.assertEqual(error_type(body), "IncompleteSignatureException")

    def test_body_changed_after_signing(self):
        name = support.unique("raw-tampered")
        signed = json.dumps({"RuleSetName": name, "Rules": []}).encode()
        sent = json.dumps({"RuleSetName": name + "x", "Rules": []}).encode()
        status, _, body = post("/", signed, {"X-Amz-Target": "MailManagerSvc.CreateRuleSet",
                                             "Content-Type": JSON_TYPE}, self.credentials, body_sent=sent)
        self.assertEqual(status, 403, body)
        self.assertEqual(error_type(body), "InvalidSignatureException")
        names = [r["RuleSetName"] for r in support.list_all(support.client("json"), "list_rule_sets", "RuleSets")]
        self.assertNotIn(name, names)
        self.assertNotIn(name + "x", names)

    def test_signature_for_another_service(self):
        request = AWSRequest(method="POST", url=support.ENDPOINT + "/", data=b"{}",
                             headers={"X-Amz-Target": "MailManagerSvc.ListRuleSets", "Content-Type": JSON_TYPE})
        SigV4Auth(self.credentials, "s3", support.REGION).add_auth(request)
        prepared = request.prepare()
        http = urllib.request.Request(prepared.url, data=b"{}", headers=dict(prepared.headers.items()),
                                      method="POST")
        with self.assertRaises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(http, timeout=support.WAIT)
        self.assertEqual(caught.exception.code, 403)
        self.assertEqual(error_type(caught.exception.read()), "InvalidSignatureException")


# What each client puts on the wire.
WIRE = {
    "json": {"protocol": "json", "path": "/", "content_type": JSON_TYPE,
             "headers": {"X-Amz-Target": "MailManagerSvc.ListRuleSets"}},
    "cbor": {"protocol": "smithy-rpc-v2-cbor", "path": "/service/MailManagerSvc/operation/ListRuleSets",
             "content_type": "application/cbor", "headers": {"smithy-protocol": "rpc-v2-cbor"}},
}


class ProtocolTests:
    def test_client_speaks_its_protocol(self):
        wire = WIRE[self.protocol]
        self.assertEqual(self.mm.meta.service_model.protocol, wire["protocol"])
        self.assertEqual(self.mm.meta.service_model.resolved_protocol, wire["protocol"])
        sent = []

        def record(request, **_):
            sent.append(request)

        self.mm.meta.events.register("before-send.mailmanager.ListRuleSets", record)
        try:
            response = self.mm.list_rule_sets(PageSize=1)
        finally:
            self.mm.meta.events.unregister("before-send.mailmanager.ListRuleSets", record)
        self.assertEqual(len(sent), 1)
        request = sent[0]
        self.assertEqual(request.url, support.ENDPOINT + wire["path"])
        self.assertEqual(text(request.headers["Content-Type"]), wire["content_type"])
        for header, value in wire["headers"].items():
            self.assertEqual(text(request.headers[header]), value)
        self.assertTrue(text(request.headers["Authorization"]).startswith("AWS4-HMAC-SHA256 Credential="))
        self.assertIn(f"/{support.REGION}/ses/aws4_request", text(request.headers["Authorization"]))
        answer_type = response["ResponseMetadata"]["HTTPHeaders"]["content-type"].split(";")[0]
        self.assertEqual(answer_type, wire["content_type"])
        self.assertLessEqual(len(response["RuleSets"]), 1)

    def test_errors_in_its_protocol(self):
        with self.assertApiError("ResourceNotFoundException") as caught:
            self.mm.get_rule_set(RuleSetId=support.missing_id("rs-"))
        headers = caught.exception.response["ResponseMetadata"]["HTTPHeaders"]
        self.assertEqual(headers["content-type"].split(";")[0], WIRE[self.protocol]["content_type"])
        self.assertTrue(caught.exception.response["Error"]["Message"])


class ProtocolOverJson(ProtocolTests, support.JsonCase):
    pass


class ProtocolOverCbor(ProtocolTests, support.CborCase):
    pass
