"""Archives: CreateArchive, GetArchive, ListArchives, UpdateArchive,
DeleteArchive; what is in them: StartArchiveSearch, GetArchiveSearch,
GetArchiveSearchResults, ListArchiveSearches, StopArchiveSearch,
GetArchiveMessage (and its download link), GetArchiveMessageContent;
exports: StartArchiveExport (to a bucket that Server.ObjectStorage maps to
a local directory), GetArchiveExport, ListArchiveExports,
StopArchiveExport."""

import datetime
import json
import urllib.parse

from botocore.exceptions import ClientError

import support

ARCHIVE = "mailmanager-archive"
MINUTE = datetime.timedelta(minutes=1)


class ArchiveTests:
    """The archive resource itself."""

    def test_create_get_list_update_delete(self):
        name = self.name("a")
        before = support.now()
        archive = self.mm.create_archive(ArchiveName=name, Retention={"RetentionPeriod": "ONE_YEAR"})["ArchiveId"]
        self.assertId(ARCHIVE, archive)

        got = self.mm.get_archive(ArchiveId=archive)
        self.assertEqual(got["ArchiveId"], archive)
        self.assertEqual(got["ArchiveName"], name)
        self.assertArn(ARCHIVE, archive, got["ArchiveArn"])
        self.assertEqual(got["ArchiveState"], "ACTIVE")
        self.assertEqual(got["Retention"], {"RetentionPeriod": "ONE_YEAR"})
        self.assertNotIn("KmsKeyArn", got)
        self.assertRecent(got["CreatedTimestamp"], before)
        self.assertGreaterEqual(got["LastUpdatedTimestamp"], got["CreatedTimestamp"])

        listed = support.find_one(support.list_all(self.mm, "list_archives", "Archives"), "ArchiveName", name)
        self.assertEqual(listed, {"ArchiveId": archive, "ArchiveName": name, "ArchiveState": "ACTIVE",
                                  "LastUpdatedTimestamp": got["LastUpdatedTimestamp"]})

        renamed = self.name("a-renamed")
        self.mm.update_archive(ArchiveId=archive, ArchiveName=renamed, Retention={"RetentionPeriod": "PERMANENT"})
        updated = self.mm.get_archive(ArchiveId=archive)
        self.assertEqual((updated["ArchiveName"], updated["Retention"]), (renamed, {"RetentionPeriod": "PERMANENT"}))
        self.assertEqual(updated["CreatedTimestamp"], got["CreatedTimestamp"])
        self.assertGreaterEqual(updated["LastUpdatedTimestamp"], got["LastUpdatedTimestamp"])
        self.mm.update_archive(ArchiveId=archive, Retention={"RetentionPeriod": "TEN_YEARS"})
        self.assertEqual(self.mm.get_archive(ArchiveId=archive)["ArchiveName"], renamed)

        # Deleting starts the grace period: the archive stays, PENDING_DELETION,
        # and can no longer change.
        self.mm.delete_archive(ArchiveId=archive)
        pending = self.mm.get_archive(ArchiveId=archive)
        self.assertEqual(pending["ArchiveState"], "PENDING_DELETION")
        listed = support.find_one(support.list_all(self.mm, "list_archives", "Archives"), "ArchiveId", archive)
        self.assertEqual(listed["ArchiveState"], "PENDING_DELETION")
        with self.assertApiError("ConflictException"):
            self.mm.update_archive(ArchiveId=archive, ArchiveName=self.name("a-late"))
        # Its messages can no longer be searched or exported; StartArchiveExport
        # has no ConflictException in the model.
        window = {"FromTimestamp": before - MINUTE, "ToTimestamp": support.now() + MINUTE}
        with self.assertApiError("ConflictException"):
            self.mm.start_archive_search(ArchiveId=archive, MaxResults=10, **window)
        with self.assertApiError("ValidationException"):
            self.mm.start_archive_export(ArchiveId=archive, ExportDestinationConfiguration={
                "S3": {"S3Location": f"s3://{support.EXPORT_BUCKET}/pending"}}, **window)
        # Deleting it again changes nothing.
        self.mm.delete_archive(ArchiveId=archive)
        self.assertEqual(self.mm.get_archive(ArchiveId=archive)["ArchiveState"], "PENDING_DELETION")

    def test_default_retention(self):
        archive = support.make_archive(self.mm, self.name("a-default"))
        # Without Retention an archive keeps its messages (docs/api.md).
        self.assertEqual(self.mm.get_archive(ArchiveId=archive)["Retention"], {"RetentionPeriod": "PERMANENT"})

    def test_validation_names_the_field(self):
        cases = [
            ("ArchiveName", "create_archive", {"ArchiveName": "x"}),
            ("ArchiveName", "create_archive", {"ArchiveName": "-leading-hyphen"}),
            ("ArchiveName", "create_archive", {"ArchiveName": "a" * 65}),
            ("RetentionPeriod", "create_archive", {"ArchiveName": self.name("a-bad"),
                                                   "Retention": {"RetentionPeriod": "FOREVER"}}),
            ("KmsKeyArn", "create_archive", {"ArchiveName": self.name("a-bad"),
                                             "KmsKeyArn": "arn:aws:kms:us-east-1:123456789012:key/none-mapped"}),
            ("KmsKeyArn", "create_archive", {"ArchiveName": self.name("a-bad"), "KmsKeyArn": "not-an-arn"}),
            ("ArchiveId", "start_archive_search", {
                "ArchiveId": "archive-without-prefix", "FromTimestamp": support.now() - MINUTE,
                "ToTimestamp": support.now(), "MaxResults": 10}),
            ("PageSize", "list_archives", {"PageSize": 51}),
        ]
        for field, method, params in cases:
            with self.subTest(field=field, method=method, params=params):
                with self.assertApiError("ValidationException", field):
                    getattr(self.raw, method)(**params)

    def test_unknown_archive(self):
        missing = support.missing_id("a-")
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.get_archive(ArchiveId=missing)
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.update_archive(ArchiveId=missing, ArchiveName=self.name("a-none"))
        window = {"FromTimestamp": support.now() - MINUTE, "ToTimestamp": support.now()}
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.start_archive_search(ArchiveId=missing, MaxResults=10, **window)
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.start_archive_export(
                ArchiveId=missing, ExportDestinationConfiguration={
                    "S3": {"S3Location": f"s3://{support.EXPORT_BUCKET}/none"}}, **window)
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.list_archive_searches(ArchiveId=missing)
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.list_archive_exports(ArchiveId=missing)
        for method, params in [
            ("get_archive_search", {"SearchId": "no-such-search"}),
            ("get_archive_search_results", {"SearchId": "no-such-search"}),
            ("stop_archive_search", {"SearchId": "no-such-search"}),
            ("get_archive_export", {"ExportId": "no-such-export"}),
            ("stop_archive_export", {"ExportId": "no-such-export"}),
            ("get_archive_message", {"ArchivedMessageId": "no-such-message"}),
            ("get_archive_message_content", {"ArchivedMessageId": "no-such-message"}),
        ]:
            # These operations have no ResourceNotFoundException in the model.
            with self.subTest(method=method):
                with self.assertApiError("ValidationException"):
                    getattr(self.mm, method)(**params)

    def test_names_are_unique(self):
        name = self.name("a-dup")
        support.make_archive(self.mm, name)
        with self.assertApiError("ConflictException"):
            support.make_archive(self.mm, name)

    def test_client_token(self):
        self.assertIdempotent(
            self.mm.create_archive, "ArchiveId",
            {"ArchiveName": self.name("a-token"), "Retention": {"RetentionPeriod": "THREE_MONTHS"}},
            {"ArchiveName": self.name("a-token")},
        )

    def test_pagination(self):
        ids = [support.make_archive(self.mm, self.name("a-page")) for _ in range(4)]
        self.assertPaged("list_archives", "Archives", "ArchiveId", ids, 3)


class ArchivesOverJson(ArchiveTests, support.JsonCase):
    pass


class ArchivesOverCbor(ArchiveTests, support.CborCase):
    pass


# --- messages in an archive --------------------------------------------------------

ATTACHMENT_HEADERS = 'MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary="b1"\r\n'
ATTACHMENT_BODY = (
    "--b1\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "Beta body with the quarterly report attached.\r\n"
    "--b1\r\n"
    'Content-Type: application/octet-stream; name="report.bin"\r\n'
    'Content-Disposition: attachment; filename="report.bin"\r\n'
    "Content-Transfer-Encoding: base64\r\n"
    "\r\n"
    "c2VjcmV0LWF0dGFjaG1lbnQtYnl0ZXM=\r\n"
    "--b1--\r\n"
)

HTML_HEADERS = 'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="b2"\r\n'
HTML_BODY = (
    "--b2\r\n"
    "Content-Type: text/plain; charset=utf-8\r\n"
    "\r\n"
    "Gamma plain text.\r\n"
    "--b2\r\n"
    "Content-Type: text/html; charset=utf-8\r\n"
    "\r\n"
    "<p>Gamma <b>html</b> text.</p>\r\n"
    "--b2--\r\n"
)


class ArchiveMessageTests:
    """Three messages sent over SMTP into an archive made for the class:
    alpha (plain text), beta (an attachment), gamma (text and HTML)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        mm = support.client(cls.protocol)
        token = support.unique(cls.protocol)
        # Whole seconds: both protocols carry them exactly.
        cls.start = support.now().replace(microsecond=0) - MINUTE
        cls.archive = support.make_archive(mm, support.unique(f"a-msgs-{cls.protocol}"))
        cls.gw = support.set_gateway_rules(mm, support.archive_rules(cls.archive))
        cls.rule_set_arn = mm.get_rule_set(RuleSetId=cls.gw["RuleSetId"])["RuleSetArn"]
        specs = {
            "alpha": ("alice@sender.test", "ap@corp.test",
                      support.message(f"alpha {token} invoice", "ap@corp.test",
                                      body="Alpha body: please pay the invoice.\r\n")),
            "beta": ("bob@sender.test", "reports@corp.test",
                     support.message(f"beta {token} report", "reports@corp.test", sender="bob@sender.test",
                                     extra_headers=ATTACHMENT_HEADERS, body=ATTACHMENT_BODY)),
            "gamma": ("news@bounce.sender.test", "all@corp.test",
                      support.message(f"gamma {token} news", "all@corp.test", sender="news@sender.test",
                                      extra_headers=HTML_HEADERS, body=HTML_BODY)),
        }
        cls.sent = {}
        for label, (mail_from, rcpt, data) in specs.items():
            queue_id = support.send(mail_from, [rcpt], data)
            record = support.wait_trace(queue_id)
            kinds = [kind for kind, _ in support.actions_of(record)]
            if kinds != ["Archive"]:
                raise AssertionError(f"{label} was not archived: {record}")
            cls.sent[label] = {"queue_id": queue_id, "mail_from": mail_from, "rcpt": rcpt, "data": data}
        cls.end = support.now().replace(microsecond=0) + MINUTE
        cls.token = token

    def stop(self, stop, member, job_id, status):
        """Stops a job just started. Either it was still queued or running:
        the stop is accepted and the job ends CANCELLED; or it had already
        completed: the stop is a ValidationException (the model has no
        ConflictException for it) and the job stays COMPLETED. Returns the
        final state."""
        try:
            stop(**{member: job_id})
        except ClientError as e:
            self.assertEqual(e.response["Error"]["Code"], "ValidationException", e.response["Error"])
            self.assertIn(job_id, e.response["Error"]["Message"])
            self.assertEqual(status()["State"], "COMPLETED")
            return "COMPLETED"
        final = support.wait_until(
            f"{job_id} to end",
            lambda: (lambda s: s if s.get("State") in ("COMPLETED", "FAILED", "CANCELLED") else None)(status()))
        self.assertEqual(final["State"], "CANCELLED", final)
        # Stopping it again is no error: the operation is idempotent.
        stop(**{member: job_id})
        return "CANCELLED"

    def ids_of(self, rows):
        return [r["ArchivedMessageId"] for r in rows]

    def all_rows(self):
        _, rows = self.search_archive(self.archive, self.start, self.end)
        self.assertEqual(len(rows), 3, rows)
        return {next(label for label in self.sent if r["Subject"].startswith(label)): r for r in rows}

    def test_search_finds_every_message_newest_first(self):
        search_id, rows = self.search_archive(self.archive, self.start, self.end, max_results=100)
        self.assertEqual(sorted(r["Subject"].split()[0] for r in rows), ["alpha", "beta", "gamma"])
        stamps = [r["ReceivedTimestamp"] for r in rows]
        self.assertEqual(stamps, sorted(stamps, reverse=True), "newest first")

        job = self.mm.get_archive_search(SearchId=search_id)
        self.assertEqual(job["ArchiveId"], self.archive)
        self.assertEqual(job["MaxResults"], 100)
        self.assertEqual((job["FromTimestamp"], job["ToTimestamp"]), (self.start, self.end))
        self.assertEqual(job["Status"]["State"], "COMPLETED")
        self.assertGreaterEqual(job["Status"]["CompletionTimestamp"], job["Status"]["SubmissionTimestamp"])

        _, one = self.search_archive(self.archive, self.start, self.end, max_results=1)
        self.assertEqual(self.ids_of(one), self.ids_of(rows)[:1])
        _, none = self.search_archive(self.archive, self.start - 10 * MINUTE, self.start)
        self.assertEqual(none, [])

    def test_search_filters(self):
        rows = self.all_rows()
        ids = {label: r["ArchivedMessageId"] for label, r in rows.items()}

        def found(filters):
            return sorted(self.archived_ids(self.archive, self.start, self.end, filters))

        cases = [
            ({"Include": [{"StringExpression": {"Evaluate": {"Attribute": "SUBJECT"}, "Operator": "CONTAINS",
                                                "Values": ["ALPHA"]}}]}, ["alpha"]),
            ({"Include": [{"StringExpression": {"Evaluate": {"Attribute": "SUBJECT"}, "Operator": "CONTAINS",
                                                "Values": ["alpha", "gamma"]}}]}, ["alpha", "gamma"]),
            ({"Unless": [{"StringExpression": {"Evaluate": {"Attribute": "SUBJECT"}, "Operator": "CONTAINS",
                                               "Values": ["beta"]}}]}, ["alpha", "gamma"]),
            ({"Include": [{"BooleanExpression": {"Evaluate": {"Attribute": "HAS_ATTACHMENTS"},
                                                 "Operator": "IS_TRUE"}}]}, ["beta"]),
            ({"Include": [{"BooleanExpression": {"Evaluate": {"Attribute": "HAS_ATTACHMENTS"},
                                                 "Operator": "IS_FALSE"}}]}, ["alpha", "gamma"]),
            ({"Include": [{"StringExpression": {"Evaluate": {"Attribute": "ENVELOPE_FROM"},
                                                "Operator": "CONTAINS", "Values": ["bounce.sender"]}}]}, ["gamma"]),
            ({"Include": [{"StringExpression": {"Evaluate": {"Attribute": "ENVELOPE_TO"},
                                                "Operator": "CONTAINS", "Values": ["reports@"]}}]}, ["beta"]),
            ({"Include": [{"StringExpression": {"Evaluate": {"Attribute": "FROM"},
                                                "Operator": "CONTAINS", "Values": ["bob@"]}}]}, ["beta"]),
            ({"Include": [{"StringExpression": {"Evaluate": {"Attribute": "TO"},
                                                "Operator": "CONTAINS", "Values": ["ap@corp"]}}]}, ["alpha"]),
            ({"Include": [
                {"StringExpression": {"Evaluate": {"Attribute": "TO"}, "Operator": "CONTAINS",
                                      "Values": ["corp.test"]}},
                {"StringExpression": {"Evaluate": {"Attribute": "SUBJECT"}, "Operator": "CONTAINS",
                                      "Values": ["news"]}}]}, ["gamma"]),
            ({"Include": [{"StringExpression": {"Evaluate": {"Attribute": "CC"}, "Operator": "CONTAINS",
                                                "Values": ["@"]}}]}, []),
        ]
        for filters, expected in cases:
            with self.subTest(filters=filters):
                self.assertEqual(found(filters), sorted(ids[label] for label in expected))

    def test_search_rows(self):
        rows = self.all_rows()
        alpha = rows["alpha"]
        sent = self.sent["alpha"]
        self.assertEqual(alpha["Subject"], f"alpha {self.token} invoice")
        self.assertEqual(alpha["From"], "Alice <alice@sender.test>")
        self.assertEqual(alpha["To"], "ap@corp.test")
        self.assertEqual(alpha["XMailer"], "postern-api-suite")
        self.assertIn(alpha["MessageId"], sent["data"])
        self.assertIs(alpha["HasAttachments"], False)
        self.assertIs(rows["beta"]["HasAttachments"], True)
        self.assertEqual(alpha["IngressPointId"], self.gw["IngressPointId"])
        self.assertEqual(alpha["SenderIpAddress"], "127.0.0.1")
        self.assertEqual(alpha["Envelope"], {"Helo": "client.test", "From": sent["mail_from"], "To": [sent["rcpt"]]})
        self.assertEqual(alpha["SourceArn"], self.rule_set_arn)
        self.assertTrue(any(h.startswith("from client.test") for h in alpha["ReceivedHeaders"]),
                        alpha["ReceivedHeaders"])
        self.assertTrue(self.start <= alpha["ReceivedTimestamp"] <= self.end)

    def test_get_message_and_download(self):
        rows = self.all_rows()
        for label, row in rows.items():
            with self.subTest(message=label):
                message_id = row["ArchivedMessageId"]
                sent = self.sent[label]
                got = self.mm.get_archive_message(ArchivedMessageId=message_id)
                metadata = got["Metadata"]
                self.assertEqual(metadata["IngressPointId"], self.gw["IngressPointId"])
                self.assertEqual(metadata["TrafficPolicyId"], self.gw["TrafficPolicyId"])
                self.assertEqual(metadata["RuleSetId"], self.gw["RuleSetId"])
                self.assertEqual(metadata["SenderIpAddress"], "127.0.0.1")
                self.assertEqual(metadata["SourceArn"], self.rule_set_arn)
                self.assertEqual(metadata["Timestamp"], row["ReceivedTimestamp"])
                self.assertEqual(got["Envelope"],
                                 {"Helo": "client.test", "From": sent["mail_from"], "To": [sent["rcpt"]]})

                status, body = support.http_get(got["MessageDownloadLink"])
                self.assertEqual(status, 200)
                self.assertEqual(body, support.archived_file(self.archive, message_id))
                self.assertTrue(body.startswith(b"Received: "), body[:200])
                self.assertTrue(body.endswith(sent["data"].encode()), "the sent bytes follow the added headers")

        # A link is for one message and cannot be changed.
        alpha, beta = rows["alpha"]["ArchivedMessageId"], rows["beta"]["ArchivedMessageId"]
        link = self.mm.get_archive_message(ArchivedMessageId=alpha)["MessageDownloadLink"]
        self.assertEqual(support.http_get(link.replace(alpha, beta))[0], 403)
        url = urllib.parse.urlsplit(link)
        query = [(k, v if k != "expires" else str(int(v) + 3600)) for k, v in urllib.parse.parse_qsl(url.query)]
        self.assertEqual(support.http_get(url._replace(query=urllib.parse.urlencode(query)).geturl())[0], 403)

    def test_message_content(self):
        rows = self.all_rows()
        alpha = self.mm.get_archive_message_content(ArchivedMessageId=rows["alpha"]["ArchivedMessageId"])["Body"]
        self.assertIn("Alpha body: please pay the invoice.", alpha["Text"])
        self.assertNotIn("Html", alpha)
        self.assertIs(alpha.get("MessageMalformed", False), False)

        beta = self.mm.get_archive_message_content(ArchivedMessageId=rows["beta"]["ArchivedMessageId"])["Body"]
        self.assertIn("Beta body with the quarterly report attached.", beta["Text"])
        self.assertNotIn("c2VjcmV0", beta["Text"], "attachments are not content")
        self.assertNotIn("secret-attachment-bytes", beta["Text"], "attachments are not content")

        gamma = self.mm.get_archive_message_content(ArchivedMessageId=rows["gamma"]["ArchivedMessageId"])["Body"]
        self.assertIn("Gamma plain text.", gamma["Text"])
        self.assertIn("<b>html</b>", gamma["Html"])

    def test_search_validation(self):
        window = {"FromTimestamp": self.start, "ToTimestamp": self.end}
        cases = [
            ("MaxResults", {"MaxResults": 1001}),
            ("MaxResults", {}),
            ("Operator", {"MaxResults": 10, "Filters": {"Include": [{"StringExpression": {
                "Evaluate": {"Attribute": "SUBJECT"}, "Operator": "EQUALS", "Values": ["x"]}}]}}),
            ("Attribute", {"MaxResults": 10, "Filters": {"Include": [{"StringExpression": {
                "Evaluate": {"Attribute": "BODY"}, "Operator": "CONTAINS", "Values": ["x"]}}]}}),
            ("Include", {"MaxResults": 10, "Filters": {"Include": [support.subject_filter("x")["Include"][0]] * 11}}),
            ("Timestamp", {"MaxResults": 10, "FromTimestamp": self.end, "ToTimestamp": self.start}),
        ]
        for field, params in cases:
            with self.subTest(field=field, params=params):
                with self.assertApiError("ValidationException", field):
                    self.raw.start_archive_search(**dict(window, ArchiveId=self.archive, **params))

    def test_list_and_stop_searches(self):
        archive = support.make_archive(self.mm, self.name("a-searches"))
        window = {"FromTimestamp": self.start, "ToTimestamp": self.end}
        ids = [self.search_archive(archive, self.start, self.end)[0] for _ in range(3)]

        stopped = self.mm.start_archive_search(ArchiveId=self.archive, MaxResults=1000, **window)["SearchId"]
        state = self.stop(self.mm.stop_archive_search, "SearchId", stopped,
                          lambda: self.mm.get_archive_search(SearchId=stopped)["Status"])
        if state == "CANCELLED":
            with self.assertApiError("ConflictException"):
                self.mm.get_archive_search_results(SearchId=stopped)
        listed = {s["SearchId"]: s["Status"]["State"]
                  for s in support.list_all(self.mm, "list_archive_searches", "Searches", ArchiveId=self.archive)}
        self.assertEqual(listed[stopped], state)

        searches = self.assertPaged("list_archive_searches", "Searches", "SearchId", ids, 2, ArchiveId=archive)
        self.assertEqual(sorted(s["SearchId"] for s in searches), sorted(ids), "searches of that archive only")
        for s in searches:
            self.assertEqual(s["Status"]["State"], "COMPLETED")

    # --- exports -------------------------------------------------------------

    def export(self, prefix, **params):
        """Runs an export to s3://{bucket}/{prefix} to completion; returns
        (ExportId, GetArchiveExport's answer, {file name: bytes})."""
        destination = {"S3": {"S3Location": f"s3://{support.EXPORT_BUCKET}/{prefix}"}}
        export_id = self.mm.start_archive_export(
            ArchiveId=self.archive, FromTimestamp=self.start, ToTimestamp=self.end,
            ExportDestinationConfiguration=destination, **params)["ExportId"]
        got = support.wait_until(
            f"export {export_id} to finish",
            lambda: (lambda e: e if e["Status"].get("State") in ("COMPLETED", "FAILED", "CANCELLED") else None)(
                self.mm.get_archive_export(ExportId=export_id)))
        self.assertEqual(got["Status"]["State"], "COMPLETED", got["Status"].get("ErrorMessage"))
        self.assertEqual(got["ArchiveId"], self.archive)
        self.assertEqual(got["ExportDestinationConfiguration"], destination)
        self.assertGreaterEqual(got["Status"]["CompletionTimestamp"], got["Status"]["SubmissionTimestamp"])
        root = support.EXPORT_DIR / prefix
        files = {p.name: p.read_bytes() for p in root.rglob("*") if p.is_file()}
        return export_id, got, files

    def test_export_writes_the_archived_bytes(self):
        rows = self.all_rows()
        prefix = f"exports/{self.name('all')}"
        export_id, got, files = self.export(prefix, IncludeMetadata=True)
        expected = {f"{r['ArchivedMessageId']}.{ext}" for r in rows.values() for ext in ("eml", "json")}
        self.assertEqual(set(files), expected)
        for label, row in rows.items():
            with self.subTest(message=label):
                message_id = row["ArchivedMessageId"]
                link = self.mm.get_archive_message(ArchivedMessageId=message_id)["MessageDownloadLink"]
                status, downloaded = support.http_get(link)
                self.assertEqual(status, 200)
                self.assertEqual(files[f"{message_id}.eml"], downloaded)
                metadata = json.loads(files[f"{message_id}.json"])
                self.assertEqual(metadata["ArchivedMessageId"], message_id)
                self.assertEqual(metadata["Subject"], row["Subject"])

        listed = {e["ExportId"]: e["Status"]["State"]
                  for e in support.list_all(self.mm, "list_archive_exports", "Exports", ArchiveId=self.archive)}
        self.assertEqual(listed[export_id], "COMPLETED")

    def test_export_filters_and_max_results(self):
        rows = self.all_rows()
        _, got, files = self.export(self.name("alpha"), Filters=support.subject_filter("alpha"))
        self.assertEqual(set(files), {f"{rows['alpha']['ArchivedMessageId']}.eml"}, "no metadata unless asked")
        self.assertEqual(got["Filters"], support.subject_filter("alpha"))

        _, got, files = self.export(self.name("one"), MaxResults=1)
        self.assertEqual(len(files), 1, files.keys())
        self.assertEqual(got["MaxResults"], 1)
        self.assertIn(next(iter(files)), {f"{r['ArchivedMessageId']}.eml" for r in rows.values()})

    def test_export_validation(self):
        window = {"ArchiveId": self.archive, "FromTimestamp": self.start, "ToTimestamp": self.end}
        cases = [
            ("S3Location", dict(window, ExportDestinationConfiguration={"S3": {"S3Location": "http://bucket/x"}})),
            ("ExportDestinationConfiguration", window),
            ("Timestamp", dict(window, FromTimestamp=self.end, ToTimestamp=self.start,
                               ExportDestinationConfiguration={
                                   "S3": {"S3Location": f"s3://{support.EXPORT_BUCKET}/x"}})),
        ]
        for field, params in cases:
            with self.subTest(field=field, params=params):
                with self.assertApiError("ValidationException", field):
                    self.raw.start_archive_export(**params)

    def test_list_and_stop_exports(self):
        ids = [self.export(self.name("page"))[0] for _ in range(3)]
        destination = {"S3": {"S3Location": f"s3://{support.EXPORT_BUCKET}/{self.name('stopped')}"}}
        stopped = self.mm.start_archive_export(
            ArchiveId=self.archive, FromTimestamp=self.start, ToTimestamp=self.end,
            ExportDestinationConfiguration=destination)["ExportId"]
        state = self.stop(self.mm.stop_archive_export, "ExportId", stopped,
                          lambda: self.mm.get_archive_export(ExportId=stopped)["Status"])

        exports = self.assertPaged("list_archive_exports", "Exports", "ExportId", ids + [stopped], 2,
                                   ArchiveId=self.archive)
        states = {e["ExportId"]: e["Status"]["State"] for e in exports}
        self.assertEqual([states[i] for i in ids], ["COMPLETED"] * 3)
        self.assertEqual(states[stopped], state)


class ArchiveMessagesOverJson(ArchiveMessageTests, support.JsonCase):
    pass


class ArchiveMessagesOverCbor(ArchiveMessageTests, support.CborCase):
    pass
