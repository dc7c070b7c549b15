"""What the Mail Manager API suite shares: clients for both protocols,
error and pagination assertions, unique names, SMTP and the trace.

The suite runs against a running `postern serve`; the Rust runner
(`cargo test -p postern --test api_boto3`) starts one and sets:

| variable | meaning |
|---|---|
| `POSTERN_ENDPOINT` | the HTTP port, `http://127.0.0.1:PORT` (required) |
| `POSTERN_SMTP` | `HOST:PORT` of the gateway ingress point (required) |
| `POSTERN_DATA_DIR` | the server's `DataDir` (trace, archived files) (required) |
| `POSTERN_EXPORT_BUCKET`, `POSTERN_EXPORT_DIR` | a bucket for archive exports and the directory it maps to |
| `POSTERN_GATEWAY_INGRESS_POINT`, `POSTERN_GATEWAY_ARCHIVE` | names of the SMTP ingress point and of an archive the config declares (defaults `smtp-gateway`, `smtp-archive`); the tests change the rules of the ingress point's rule set and the statements of its traffic policy |
| `POSTERN_RULES_PER_RULE_SET` | `Server.Quotas.RulesPerRuleSet` of the config (default 10) |
| `POSTERN_SECRET_ARN` | a SecretArn that `Server.Secrets` maps |
| `AWS_SHARED_CREDENTIALS_FILE` + `AWS_PROFILE`, or `AWS_ACCESS_KEY_ID` + `AWS_SECRET_ACCESS_KEY` | the API keys |

Each test module defines its tests once, in a mixin, and runs them twice:
over AWS JSON 1.0 (what botocore picks with its own model) and over Smithy
RPC v2 CBOR (botocore given a copy of the reference model; see
`cbor_data_path`). Resources get names unique to the run, so the suite can
run again against the same server.
"""

import atexit
import contextlib
import datetime
import email.utils
import itertools
import json
import os
import pathlib
import re
import shutil
import smtplib
import tempfile
import time
import unittest
import urllib.error
import urllib.request
import uuid

import boto3
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError

ROOT = pathlib.Path(__file__).resolve().parents[2]
MODEL = ROOT / "crates" / "postern-model" / "model" / "mailmanager-api-2023-10-17.json"


def _required(name):
    value = os.environ.get(name)
    if not value:
        raise RuntimeError(
            f"{name} is not set: run this suite through "
            "`cargo test -p postern --test api_boto3`, or see tests/api/support.py"
        )
    return value


ENDPOINT = _required("POSTERN_ENDPOINT").rstrip("/")
SMTP = _required("POSTERN_SMTP")
DATA_DIR = pathlib.Path(_required("POSTERN_DATA_DIR"))
EXPORT_BUCKET = os.environ.get("POSTERN_EXPORT_BUCKET", "postern-exports")
EXPORT_DIR = pathlib.Path(
    os.environ.get("POSTERN_EXPORT_DIR", str(DATA_DIR / "s3" / EXPORT_BUCKET))
)
REGION = os.environ.get("AWS_DEFAULT_REGION", "us-east-1")
ACCOUNT = os.environ.get("POSTERN_ACCOUNT_ID", "000000000000")
GATEWAY_INGRESS_POINT = os.environ.get("POSTERN_GATEWAY_INGRESS_POINT", "smtp-gateway")
GATEWAY_ARCHIVE = os.environ.get("POSTERN_GATEWAY_ARCHIVE", "smtp-archive")
RULES_PER_RULE_SET = int(os.environ.get("POSTERN_RULES_PER_RULE_SET", "10"))
SECRET_ARN = os.environ.get(
    "POSTERN_SECRET_ARN",
    "arn:aws:secretsmanager:us-east-1:000000000000:secret:postern-test-login",
)

# Every wait is bounded by this many seconds.
WAIT = 30.0

# Distinguishes the resources of this run from those of earlier runs on
# the same server.
RUN = uuid.uuid4().hex[:6]

# The HTTP status the model gives each error shape, and AWS's for the
# signature errors.
STATUS = {
    "ValidationException": 400,
    "ResourceNotFoundException": 404,
    "ConflictException": 409,
    "ServiceQuotaExceededException": 402,
    "AccessDeniedException": 403,
    "ThrottlingException": 429,
}

# A self-signed CA (CN "Postern API test CA", valid until 2126) for the
# trust store of MTLS ingress points. Only the certificate: nothing here
# signs with it.
TEST_CA_PEM = """-----BEGIN CERTIFICATE-----
MIIBozCCAUmgAwIBAgIUcb+EfbkPVoB7f7db0Rxx761GiiAwCgYIKoZIzj0EAwIw
HjEcMBoGA1UEAwwTUG9zdGVybiBBUEkgdGVzdCBDQTAgFw0yNjExMjUyMjQ5NTFa
GA8yMTI2MTEwMTIyNDk1MVowHjEcMBoGA1UEAwwTUG9zdGVybiBBUEkgdGVzdCBD
QTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABGD3nbWDKKEP7BpRO6GqB4Xil4wr
fe+OGzDlw2FLCnhBZA6zAIKsjyJLrKvZ2r/XAR5Va/u1QhtkqXM3fs/NJ32jYzBh
MB0GA1UdDgQWBBR+OEsHcanQ5tD9J0IDvoXxvZx8PTAfBgNVHSMEGDAWgBR+OEsH
canQ5tD9J0IDvoXxvZx8PTAPBgNVHRMBAf8EBTADAQH/MA4GA1UdDwEB/wQEAwIB
BjAKBggqhkjOPQQDAgNIADBFAiAX2zPwG1Q99HVpPC1QC/NymFAMNBkU1BV7RjbX
pg/zYwIhAO5H4PX0JcgvYhekKu1dYdpIlgglqla2Lc32/qX/rYlU
-----END CERTIFICATE-----
"""

# --- clients -----------------------------------------------------------------

_cbor_data_path = None


def cbor_data_path():
    """A botocore data directory whose mailmanager model is the reference
    model, removed at exit.

    The reference model lists `protocols: [smithy-rpc-v2-cbor, json]`, but
    botocore picks from that list in its own order of preference, where
    `json` comes first (botocore.utils.PRIORITY_ORDERED_SUPPORTED_PROTOCOLS);
    so the copy lists the CBOR protocol alone."""
    global _cbor_data_path
    if _cbor_data_path is None:
        path = tempfile.mkdtemp(prefix="postern-api-model-")
        atexit.register(shutil.rmtree, path, True)
        target = pathlib.Path(path) / "mailmanager" / "2023-10-17"
        target.mkdir(parents=True)
        model = json.loads(MODEL.read_text())
        if model["metadata"]["protocols"][0] != "smithy-rpc-v2-cbor":
            raise AssertionError(f"the reference model lists {model['metadata']['protocols']}")
        model["metadata"]["protocol"] = "smithy-rpc-v2-cbor"
        model["metadata"]["protocols"] = ["smithy-rpc-v2-cbor"]
        (target / "service-2.json").write_text(json.dumps(model))
        _cbor_data_path = path
    return _cbor_data_path


def botocore_session(protocol):
    session = botocore.session.Session()
    if protocol == "cbor":
        session.get_component("data_loader").search_paths.insert(0, cbor_data_path())
    elif protocol != "json":
        raise ValueError(protocol)
    return session


_clients = {}


def client(protocol, validate=True):
    """A mailmanager client for `protocol` ("json" or "cbor"); with
    validate=False botocore sends what it is given, so that the server's
    own validation answers."""
    key = (protocol, validate)
    if key not in _clients:
        session = boto3.Session(botocore_session=botocore_session(protocol))
        _clients[key] = session.client(
            "mailmanager",
            endpoint_url=ENDPOINT,
            region_name=REGION,
            config=Config(
                parameter_validation=validate,
                retries={"total_max_attempts": 1, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
            ),
        )
    return _clients[key]


def credentials():
    """The API keys the suite's clients use (botocore's resolution)."""
    creds = botocore.session.Session().get_credentials()
    if creds is None:
        raise RuntimeError("no API credentials: set AWS_SHARED_CREDENTIALS_FILE and AWS_PROFILE")
    return creds.get_frozen_credentials()


# --- names and values ----------------------------------------------------------

_counter = itertools.count(1)


def unique(prefix):
    """A name no other test of any run uses: letters, digits and hyphens,
    at most 40 characters, valid for every name member of the model."""
    return f"{prefix}-{RUN}-{next(_counter)}"


def arn(kind, resource_id):
    return f"arn:aws:ses:{REGION}:{ACCOUNT}:{kind}/{resource_id}"


ID_PATTERNS = {
    "mailmanager-traffic-policy": r"tp-[a-z0-9]{26}",
    "mailmanager-rule-set": r"rs-[a-z0-9]{26}",
    "mailmanager-ingress-point": r"inp-[a-z0-9]{26}",
    "mailmanager-address-list": r"al-[a-z0-9]{26}",
    "mailmanager-archive": r"a-[a-z0-9]{26}",
    "mailmanager-smtp-relay": r"rl-[a-z0-9]{26}",
    "addon-subscription": r"as-[a-z0-9]{26}",
    "addon-instance": r"ai-[a-z0-9]{26}",
}


def now():
    return datetime.datetime.now(datetime.timezone.utc)


def tag_list(tags):
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def tag_dict(tag_list_value):
    return {t["Key"]: t["Value"] for t in tag_list_value}


# --- the resources the config declares for SMTP ---------------------------------


def find_one(items, key, value):
    """The one item whose `key` is `value`."""
    found = [i for i in items if i.get(key) == value]
    if len(found) != 1:
        raise AssertionError(f"expected one item with {key} {value!r}, found {found!r}")
    return found[0]


def gateway(mm):
    """Ids of the config's SMTP resources, found through the List
    operations: ingress point, traffic policy, rule set, archive."""
    ingress = find_one(
        list_all(mm, "list_ingress_points", "IngressPoints"),
        "IngressPointName",
        GATEWAY_INGRESS_POINT,
    )
    detail = mm.get_ingress_point(IngressPointId=ingress["IngressPointId"])
    archive = find_one(
        list_all(mm, "list_archives", "Archives"), "ArchiveName", GATEWAY_ARCHIVE
    )
    return {
        "IngressPointId": ingress["IngressPointId"],
        "TrafficPolicyId": detail["TrafficPolicyId"],
        "RuleSetId": detail["RuleSetId"],
        "ArchiveId": archive["ArchiveId"],
    }


def list_all(mm, method, key, **params):
    """Every item of a List operation, through botocore's paginator."""
    items = []
    for page in mm.get_paginator(method).paginate(**params):
        items.extend(page.get(key, []))
    return items


# --- waits ------------------------------------------------------------------------


def wait_until(what, probe, timeout=WAIT, interval=0.05):
    """Calls probe until it returns something truthy and returns it; raises
    AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout}s waiting for {what}")
        time.sleep(interval)


# --- SMTP and the trace -------------------------------------------------------------


def message(subject, to, body="Hello from the API suite.\r\n", sender="alice@sender.test",
            extra_headers=""):
    """A small RFC 5322 message with CRLF line ends and a Message-ID."""
    msgid = f"<{uuid.uuid4().hex}@sender.test>"
    return (
        f"From: Alice <{sender}>\r\n"
        f"To: {to}\r\n"
        f"Subject: {subject}\r\n"
        f"Date: {email.utils.formatdate()}\r\n"
        f"Message-ID: {msgid}\r\n"
        f"X-Mailer: postern-api-suite\r\n"
        f"{extra_headers}"
        "\r\n"
        f"{body}"
    )


def send(mail_from, recipients, data):
    """Sends one message to the gateway ingress point over SMTP; returns the
    queue id from the 250 reply to DATA."""
    host, port = SMTP.rsplit(":", 1)
    with smtplib.SMTP(host, int(port), timeout=WAIT) as s:
        s.ehlo("client.test")
        code, text = s.mail(mail_from)
        if code != 250:
            raise AssertionError(f"MAIL FROM:<{mail_from}>: {code} {text!r}")
        for r in recipients:
            code, text = s.rcpt(r)
            if code != 250:
                raise AssertionError(f"RCPT TO:<{r}>: {code} {text!r}")
        code, text = s.data(data.encode() if isinstance(data, str) else data)
        if code != 250:
            raise AssertionError(f"DATA: {code} {text!r}")
    match = re.search(r"queued as (\S+)", text.decode())
    if not match:
        raise AssertionError(f"no queue id in the reply to DATA: {text!r}")
    return match.group(1)


def rcpt_reply(mail_from, recipient):
    """The reply (code, text) to RCPT TO for one recipient; the session is
    reset and closed without sending a message."""
    host, port = SMTP.rsplit(":", 1)
    with smtplib.SMTP(host, int(port), timeout=WAIT) as s:
        s.ehlo("client.test")
        code, text = s.mail(mail_from)
        if code != 250:
            raise AssertionError(f"MAIL FROM:<{mail_from}>: {code} {text!r}")
        reply = s.rcpt(recipient)
        s.rset()
    return reply[0], reply[1].decode(errors="replace")


def greeting():
    """The reply (code, text) that greets a new SMTP connection."""
    host, port = SMTP.rsplit(":", 1)
    s = smtplib.SMTP(timeout=WAIT)
    try:
        code, text = s.connect(host, int(port))
    finally:
        s.close()
    return code, text.decode(errors="replace")


def trace_records():
    records = []
    directory = DATA_DIR / "trace"
    if not directory.is_dir():
        return records
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text(errors="replace").splitlines(keepends=True):
            if line.endswith("\n"):
                records.append(json.loads(line))
    return records


def wait_trace(queue_id):
    """The trace record of a processed message: once it is written, every
    action of the message has its outcome."""
    return wait_until(
        f"the trace record of message {queue_id}",
        lambda: next(
            (r for r in trace_records() if r.get("Kind") == "Message" and r.get("QueueId") == queue_id),
            None,
        ),
    )


def actions_of(record):
    """(action kind, outcome) of every action the record says ran."""
    return [
        (a["Action"], a["Outcome"])
        for r in record["Recipients"]
        for a in r["Actions"]
    ]


def http_get(url):
    """(status, body) of a GET, without raising on 4xx."""
    try:
        with urllib.request.urlopen(url, timeout=WAIT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def http_put(url, body, content_type):
    request = urllib.request.Request(url, data=body, method="PUT", headers={"Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=WAIT) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


# --- test cases -------------------------------------------------------------------


class ApiCase(unittest.TestCase):
    """A test case bound to one protocol; subclasses set `protocol`."""

    protocol = None
    maxDiff = None

    @property
    def mm(self):
        """The client with botocore's parameter validation."""
        return client(self.protocol)

    @property
    def raw(self):
        """The client without botocore's parameter validation: what it is
        given reaches the server."""
        return client(self.protocol, validate=False)

    def name(self, prefix):
        return unique(f"{prefix}-{self.protocol}")

    @contextlib.contextmanager
    def assertApiError(self, code, *fragments):
        """Asserts the block raises the API error `code`, with the model's
        HTTP status, whose message contains every fragment (the fields it
        names)."""
        with self.assertRaises(ClientError) as caught:
            yield caught
        response = caught.exception.response
        error = response.get("Error", {})
        detail = f"{caught.exception.operation_name} answered {error!r}"
        self.assertEqual(error.get("Code"), code, detail)
        self.assertEqual(response["ResponseMetadata"]["HTTPStatusCode"], STATUS[code], detail)
        message = error.get("Message", "")
        for fragment in fragments:
            self.assertIn(fragment, message, detail)

    def assertRecent(self, timestamp, before, after=None):
        """A timestamp the server set between `before` and `after` (now by
        default), at a second's resolution."""
        after = after or now()
        self.assertIsInstance(timestamp, datetime.datetime)
        self.assertGreaterEqual(timestamp, before.replace(microsecond=0) - datetime.timedelta(seconds=1))
        self.assertLessEqual(timestamp, after + datetime.timedelta(seconds=1))

    def assertId(self, kind, resource_id):
        self.assertRegex(resource_id, "^" + ID_PATTERNS[kind] + "$")

    def assertArn(self, kind, resource_id, value):
        self.assertEqual(value, arn(kind, resource_id))

    def pages(self, method, key, page_size, **params):
        """Every page of a List operation, following NextToken by hand; each
        page holds at most page_size items and no item shows up twice."""
        call = getattr(self.mm, method)
        pages, token = [], None
        while True:
            args = dict(params, PageSize=page_size)
            if token is not None:
                args["NextToken"] = token
            response = call(**args)
            self.assertIn(key, response, f"{method} answered {response!r}")
            items = response[key]
            self.assertLessEqual(len(items), page_size, f"{method} page of {page_size}")
            pages.append(items)
            token = response.get("NextToken")
            if not token:
                break
            self.assertLess(len(pages), 500, f"{method}: NextToken never ends")
        return pages

    def assertPaged(self, method, key, id_key, ids, page_size, **params):
        """Lists with `page_size` and checks that more items than a page
        take several pages and that every id in `ids` is listed once."""
        self.assertGreater(len(ids), page_size, "the test needs more items than a page")
        pages = self.pages(method, key, page_size, **params)
        listed = [item[id_key] for page in pages for item in page]
        self.assertEqual(len(listed), len(set(listed)), f"{method} listed an item twice: {listed}")
        self.assertGreaterEqual(len(pages), -(-len(listed) // page_size))
        self.assertGreater(len(pages), 1, f"{method} gave {len(listed)} items in one page of {page_size}")
        for i in ids:
            self.assertIn(i, listed)
        return [item for page in pages for item in page]

    def assertIdempotent(self, create, id_key, params, changed):
        """ClientToken: the same token with the same request gives the same
        resource; with a different request (params updated with `changed`)
        a ConflictException."""
        token = uuid.uuid4().hex
        first = create(ClientToken=token, **params)[id_key]
        again = create(ClientToken=token, **params)[id_key]
        self.assertEqual(first, again, "a retry with the same ClientToken is the same request")
        with self.assertApiError("ConflictException"):
            create(ClientToken=token, **dict(params, **changed))
        return first


    def search_archive(self, archive_id, start, end, max_results=1000, filters=None):
        """Runs an archive search to completion: (SearchId, Rows)."""
        params = {"ArchiveId": archive_id, "FromTimestamp": start, "ToTimestamp": end,
                  "MaxResults": max_results}
        if filters is not None:
            params["Filters"] = filters
        search_id = self.mm.start_archive_search(**params)["SearchId"]
        status = wait_until(
            f"archive search {search_id} to finish",
            lambda: (lambda s: s if s.get("State") in ("COMPLETED", "FAILED", "CANCELLED") else None)(
                self.mm.get_archive_search(SearchId=search_id)["Status"]),
        )
        self.assertEqual(status["State"], "COMPLETED", status.get("ErrorMessage"))
        return search_id, self.mm.get_archive_search_results(SearchId=search_id)["Rows"]

    def archived_ids(self, archive_id, start, end, filters=None):
        """ArchivedMessageIds a search finds, newest first."""
        return [r["ArchivedMessageId"] for r in self.search_archive(archive_id, start, end, filters=filters)[1]]


class JsonCase(ApiCase):
    protocol = "json"


class CborCase(ApiCase):
    protocol = "cbor"


# --- resources the tests make ---------------------------------------------------------

ALLOW_ALL = {"DefaultAction": "ALLOW", "PolicyStatements": []}


def make_traffic_policy(mm, name, **extra):
    params = dict(ALLOW_ALL, TrafficPolicyName=name)
    params.update(extra)
    return mm.create_traffic_policy(**params)["TrafficPolicyId"]


def make_rule_set(mm, name, rules=None, **extra):
    if rules is None:
        rules = [{"Name": "drop-all", "Actions": [{"Drop": {}}]}]
    return mm.create_rule_set(RuleSetName=name, Rules=rules, **extra)["RuleSetId"]


def make_ingress_point(mm, name, rule_set_id=None, traffic_policy_id=None, **extra):
    rule_set_id = rule_set_id or make_rule_set(mm, name + "-rs")
    traffic_policy_id = traffic_policy_id or make_traffic_policy(mm, name + "-tp")
    params = {"IngressPointName": name, "Type": "OPEN", "RuleSetId": rule_set_id,
              "TrafficPolicyId": traffic_policy_id}
    params.update(extra)
    return mm.create_ingress_point(**params)["IngressPointId"]


def make_archive(mm, name, **extra):
    return mm.create_archive(ArchiveName=name, **extra)["ArchiveId"]


def make_address_list(mm, name, **extra):
    return mm.create_address_list(AddressListName=name, **extra)["AddressListId"]


def make_relay(mm, name, **extra):
    params = {"RelayName": name, "ServerName": "smtp.relay.test", "ServerPort": 587,
              "Authentication": {"NoAuthentication": {}}}
    params.update(extra)
    return mm.create_relay(**params)["RelayId"]


def missing_id(prefix):
    """An id of the right form that names nothing."""
    return prefix + "0" * 26


def archive_rules(target):
    """Rules that archive every message into `target`."""
    return [{"Name": "archive-all", "Actions": [{"Archive": {"TargetArchive": target}}]}]


def set_gateway_rules(mm, rules):
    """Replaces the rules of the rule set the gateway ingress point uses."""
    gw = gateway(mm)
    mm.update_rule_set(RuleSetId=gw["RuleSetId"], Rules=rules)
    return gw


def subject_filter(*values):
    return {"Include": [{"StringExpression": {"Evaluate": {"Attribute": "SUBJECT"}, "Operator": "CONTAINS",
                                              "Values": list(values)}}]}


def archived_file(archive_id, message_id):
    """The bytes of an archived message in the default store
    (DataDir/archives/{ArchiveId}/yyyy/mm/dd/{id}.eml)."""
    found = list((DATA_DIR / "archives" / archive_id).rglob(f"{message_id}.eml"))
    if len(found) != 1:
        raise AssertionError(f"expected one file {message_id}.eml under the archive, found {found}")
    return found[0].read_bytes()
