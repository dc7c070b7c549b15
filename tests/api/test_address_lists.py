"""Address lists and their members: CreateAddressList, GetAddressList,
ListAddressLists, DeleteAddressList, RegisterMemberToAddressList,
GetMemberOfAddressList, ListMembersOfAddressList,
DeregisterMemberFromAddressList; import jobs: CreateAddressListImportJob
(a pre-signed URL served by Postern takes the file by HTTP PUT),
StartAddressListImportJob, GetAddressListImportJob,
ListAddressListImportJobs, StopAddressListImportJob."""

import json
import urllib.parse

import support

AL = "mailmanager-address-list"


class AddressListTests:
    def members(self, al, **params):
        return [m["Address"] for m in support.list_all(
            self.mm, "list_members_of_address_list", "Addresses", AddressListId=al, **params)]

    def test_create_get_list_delete(self):
        name = self.name("al")
        before = support.now()
        al = self.mm.create_address_list(AddressListName=name)["AddressListId"]
        self.assertId(AL, al)
        got = self.mm.get_address_list(AddressListId=al)
        self.assertEqual(got["AddressListId"], al)
        self.assertEqual(got["AddressListName"], name)
        self.assertArn(AL, al, got["AddressListArn"])
        self.assertRecent(got["CreatedTimestamp"], before)
        self.assertGreaterEqual(got["LastUpdatedTimestamp"], got["CreatedTimestamp"])

        listed = support.find_one(
            support.list_all(self.mm, "list_address_lists", "AddressLists"), "AddressListName", name)
        self.assertEqual(listed, {k: got[k] for k in (
            "AddressListId", "AddressListArn", "AddressListName", "CreatedTimestamp", "LastUpdatedTimestamp")})

        self.mm.delete_address_list(AddressListId=al)
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.get_address_list(AddressListId=al)
        ids = [a["AddressListId"] for a in support.list_all(self.mm, "list_address_lists", "AddressLists")]
        self.assertNotIn(al, ids)

    def test_members(self):
        al = support.make_address_list(self.mm, self.name("al-members"))
        before = support.now()
        addresses = ["alice@corp.test", "bob@corp.test", "*@partner.test", "carol+tag@corp.test"]
        for a in addresses:
            self.mm.register_member_to_address_list(AddressListId=al, Address=a)
        self.assertEqual(sorted(self.members(al)), sorted(addresses))

        member = self.mm.get_member_of_address_list(AddressListId=al, Address="bob@corp.test")
        self.assertEqual(member["Address"], "bob@corp.test")
        self.assertRecent(member["CreatedTimestamp"], before)
        self.assertGreaterEqual(
            self.mm.get_address_list(AddressListId=al)["LastUpdatedTimestamp"], member["CreatedTimestamp"])

        # Filter by prefix.
        self.assertEqual(sorted(self.members(al, Filter={"AddressPrefix": "b"})), ["bob@corp.test"])
        self.assertEqual(sorted(self.members(al, Filter={"AddressPrefix": "ca"})), ["carol+tag@corp.test"])
        self.assertEqual(self.members(al, Filter={"AddressPrefix": "zz"}), [])

        # Registering a member again is not an error, and adds nothing; a
        # member is kept lower-cased.
        self.mm.register_member_to_address_list(AddressListId=al, Address="alice@corp.test")
        self.mm.register_member_to_address_list(AddressListId=al, Address="ALICE@Corp.Test")
        self.assertEqual(sorted(self.members(al)), sorted(addresses))
        self.mm.register_member_to_address_list(AddressListId=al, Address="Dave@Corp.TEST")
        self.assertEqual(self.mm.get_member_of_address_list(AddressListId=al, Address="dave@corp.test")["Address"],
                         "dave@corp.test")
        self.mm.deregister_member_from_address_list(AddressListId=al, Address="DAVE@corp.test")
        self.assertEqual(sorted(self.members(al)), sorted(addresses))

        self.mm.deregister_member_from_address_list(AddressListId=al, Address="alice@corp.test")
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.get_member_of_address_list(AddressListId=al, Address="alice@corp.test")
        self.assertEqual(sorted(self.members(al)), sorted(addresses[1:]))
        # Deregistering what is not there is not an error either.
        self.mm.deregister_member_from_address_list(AddressListId=al, Address="alice@corp.test")
        self.assertEqual(sorted(self.members(al)), sorted(addresses[1:]))

        with self.assertApiError("ValidationException", "Address"):
            self.mm.register_member_to_address_list(AddressListId=al, Address="not an address")
        self.assertEqual(sorted(self.members(al)), sorted(addresses[1:]))

    def test_member_pagination(self):
        al = support.make_address_list(self.mm, self.name("al-mpage"))
        addresses = [f"user{i}@page.test" for i in range(7)]
        for a in addresses:
            self.mm.register_member_to_address_list(AddressListId=al, Address=a)
        listed = self.assertPaged("list_members_of_address_list", "Addresses", "Address", addresses, 3,
                                  AddressListId=al)
        self.assertEqual(sorted(m["Address"] for m in listed), sorted(addresses))
        with self.assertApiError("ValidationException", "PageSize"):
            self.raw.list_members_of_address_list(AddressListId=al, PageSize=1001)

    def test_unknown_address_list(self):
        missing = support.missing_id("al-")
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.get_address_list(AddressListId=missing)
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.register_member_to_address_list(AddressListId=missing, Address="a@b.test")
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.get_member_of_address_list(AddressListId=missing, Address="a@b.test")
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.list_members_of_address_list(AddressListId=missing)
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.create_address_list_import_job(
                AddressListId=missing, Name="job", ImportDataFormat={"ImportDataType": "CSV"})
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.list_address_list_import_jobs(AddressListId=missing)
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.get_address_list_import_job(JobId="no-such-job")
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.start_address_list_import_job(JobId="no-such-job")
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.stop_address_list_import_job(JobId="no-such-job")

    def test_validation_names_the_field(self):
        cases = [
            ("AddressListName", "create_address_list", {"AddressListName": "no spaces"}),
            ("AddressListName", "create_address_list", {"AddressListName": "x" * 256}),
            ("AddressListName", "create_address_list", {}),
            ("AddressListId", "get_address_list", {"AddressListId": "al_underscore"}),
            ("ImportDataType", "create_address_list_import_job", {
                "AddressListId": support.missing_id("al-"), "Name": "job",
                "ImportDataFormat": {"ImportDataType": "XML"}}),
            ("PageSize", "list_address_lists", {"PageSize": 51}),
        ]
        for field, method, params in cases:
            with self.subTest(field=field, method=method, params=params):
                with self.assertApiError("ValidationException", field):
                    getattr(self.raw, method)(**params)

    def test_names_are_unique(self):
        name = self.name("al-dup")
        support.make_address_list(self.mm, name)
        with self.assertApiError("ConflictException"):
            support.make_address_list(self.mm, name)

    def test_client_token(self):
        self.assertIdempotent(
            self.mm.create_address_list, "AddressListId",
            {"AddressListName": self.name("al-token")},
            {"AddressListName": self.name("al-token")},
        )

    def test_pagination(self):
        ids = [support.make_address_list(self.mm, self.name("al-page")) for _ in range(4)]
        self.assertPaged("list_address_lists", "AddressLists", "AddressListId", ids, 3)

    # --- import jobs ---------------------------------------------------------

    def create_job(self, al, data_type, name=None):
        before = support.now()
        job = self.mm.create_address_list_import_job(
            AddressListId=al, Name=name or self.name("job"), ImportDataFormat={"ImportDataType": data_type})
        self.assertTrue(job["PreSignedUrl"].startswith(support.ENDPOINT + "/"), job["PreSignedUrl"])
        got = self.mm.get_address_list_import_job(JobId=job["JobId"])
        self.assertEqual(got["JobId"], job["JobId"])
        self.assertEqual(got["Status"], "CREATED")
        self.assertEqual(got["AddressListId"], al)
        self.assertEqual(got["ImportDataFormat"], {"ImportDataType": data_type})
        self.assertEqual(got["PreSignedUrl"], job["PreSignedUrl"])
        self.assertRecent(got["CreatedTimestamp"], before)
        self.assertNotIn("StartTimestamp", got)
        return job

    def upload(self, job, body, content_type):
        status, text = support.http_put(job["PreSignedUrl"], body, content_type)
        self.assertIn(status, (200, 204), text)

    def run_job(self, job_id):
        before = support.now()
        self.mm.start_address_list_import_job(JobId=job_id)
        done = support.wait_until(
            f"import job {job_id} to finish",
            lambda: (lambda j: j if j["Status"] in ("COMPLETED", "FAILED", "STOPPED") else None)(
                self.mm.get_address_list_import_job(JobId=job_id)),
        )
        self.assertEqual(done["Status"], "COMPLETED", done.get("Error"))
        self.assertRecent(done["StartTimestamp"], before)
        self.assertGreaterEqual(done["CompletedTimestamp"], done["StartTimestamp"])
        return done

    def test_import_csv(self):
        al = support.make_address_list(self.mm, self.name("al-csv"))
        self.mm.register_member_to_address_list(AddressListId=al, Address="existing@corp.test")
        job = self.create_job(al, "CSV")
        csv = "address\r\nann@import.test\r\nben@import.test\r\nnot-an-address\r\n*@wild.import.test\r\n"
        self.upload(job, csv.encode(), "text/csv")
        done = self.run_job(job["JobId"])
        self.assertEqual((done["ImportedItemsCount"], done["FailedItemsCount"]), (3, 1))
        self.assertEqual(sorted(self.members(al)), sorted(
            ["existing@corp.test", "ann@import.test", "ben@import.test", "*@wild.import.test"]))
        member = self.mm.get_member_of_address_list(AddressListId=al, Address="ann@import.test")
        self.assertGreaterEqual(member["CreatedTimestamp"], done["StartTimestamp"].replace(microsecond=0))

        # A job runs once.
        with self.assertApiError("ConflictException"):
            self.mm.start_address_list_import_job(JobId=job["JobId"])
        with self.assertApiError("ConflictException"):
            self.mm.stop_address_list_import_job(JobId=job["JobId"])

    def test_import_json(self):
        al = support.make_address_list(self.mm, self.name("al-json"))
        job = self.create_job(al, "JSON")
        lines = [json.dumps({"address": a}) for a in ("dee@import.test", "eve@import.test", "@missing-local.test")]
        self.upload(job, ("\n".join(lines) + "\n").encode(), "application/json")
        done = self.run_job(job["JobId"])
        self.assertEqual((done["ImportedItemsCount"], done["FailedItemsCount"]), (2, 1))
        self.assertEqual(sorted(self.members(al)), ["dee@import.test", "eve@import.test"])

    def test_upload_url_is_signed(self):
        al = support.make_address_list(self.mm, self.name("al-sig"))
        job = self.create_job(al, "CSV")
        url = urllib.parse.urlsplit(job["PreSignedUrl"])
        query = urllib.parse.parse_qsl(url.query)
        self.assertTrue(query, "the upload URL carries its signature in the query")
        # Change the last character of every query value: the URL no longer
        # verifies, and nothing is taken.
        tampered = urllib.parse.urlencode([(k, v[:-1] + ("0" if v[-1:] != "0" else "1")) for k, v in query])
        status, _ = support.http_put(url._replace(query=tampered).geturl(), b"address\r\nx@y.test\r\n", "text/csv")
        self.assertEqual(status, 403)
        status, _ = support.http_put(url._replace(query="").geturl(), b"address\r\nx@y.test\r\n", "text/csv")
        self.assertEqual(status, 403)

    def test_stop_a_job_that_has_not_started(self):
        al = support.make_address_list(self.mm, self.name("al-stop"))
        job = self.create_job(al, "CSV")
        self.mm.stop_address_list_import_job(JobId=job["JobId"])
        self.assertEqual(self.mm.get_address_list_import_job(JobId=job["JobId"])["Status"], "STOPPED")
        with self.assertApiError("ConflictException"):
            self.mm.start_address_list_import_job(JobId=job["JobId"])
        self.assertEqual(self.members(al), [])

    def test_import_jobs_pagination_and_token(self):
        al = support.make_address_list(self.mm, self.name("al-jobs"))
        ids = [self.create_job(al, "CSV")["JobId"] for _ in range(3)]
        listed = self.assertPaged("list_address_list_import_jobs", "ImportJobs", "JobId", ids, 2,
                                  AddressListId=al)
        self.assertEqual(sorted(j["JobId"] for j in listed), sorted(ids))
        for j in listed:
            self.assertEqual((j["AddressListId"], j["Status"], j["ImportDataFormat"]),
                             (al, "CREATED", {"ImportDataType": "CSV"}))

        self.assertIdempotent(
            self.mm.create_address_list_import_job, "JobId",
            {"AddressListId": al, "Name": self.name("job-token"), "ImportDataFormat": {"ImportDataType": "CSV"}},
            {"ImportDataFormat": {"ImportDataType": "JSON"}},
        )

    def test_delete_used_by_a_rule_conflicts(self):
        al = support.make_address_list(self.mm, self.name("al-used"))
        al_arn = self.mm.get_address_list(AddressListId=al)["AddressListArn"]
        rules = [{"Name": "listed", "Conditions": [{"BooleanExpression": {
            "Evaluate": {"IsInAddressList": {"Attribute": "RECIPIENT", "AddressLists": [al_arn]}},
            "Operator": "IS_TRUE"}}], "Actions": [{"Drop": {}}]}]
        rs = support.make_rule_set(self.mm, self.name("rs-al"), rules)
        with self.assertApiError("ConflictException"):
            self.mm.delete_address_list(AddressListId=al)
        self.mm.update_rule_set(RuleSetId=rs, Rules=[])
        self.mm.delete_address_list(AddressListId=al)


class AddressListsOverJson(AddressListTests, support.JsonCase):
    pass


class AddressListsOverCbor(AddressListTests, support.CborCase):
    pass
