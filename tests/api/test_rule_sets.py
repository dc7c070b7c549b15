"""Rule sets: CreateRuleSet, GetRuleSet, ListRuleSets, UpdateRuleSet,
DeleteRuleSet."""

import support

RS = "mailmanager-rule-set"


def sample_rules(archive_id):
    """Rules using most condition and action shapes; what GetRuleSet must
    give back unchanged."""
    return [
        {
            "Name": "archive-invoices",
            "Conditions": [
                {"StringExpression": {"Evaluate": {"Attribute": "SUBJECT"}, "Operator": "CONTAINS",
                                      "Values": ["invoice", "receipt"]}},
                {"BooleanExpression": {"Evaluate": {"Attribute": "TLS"}, "Operator": "IS_FALSE"}},
            ],
            "Unless": [
                {"IpExpression": {"Evaluate": {"Attribute": "SOURCE_IP"}, "Operator": "CIDR_MATCHES",
                                  "Values": ["192.0.2.0/24"]}},
            ],
            "Actions": [
                {"AddHeader": {"HeaderName": "X-Postern-Test", "HeaderValue": "invoice"}},
                {"Archive": {"TargetArchive": archive_id, "ActionFailurePolicy": "CONTINUE"}},
            ],
        },
        {
            "Name": "drop-large",
            "Conditions": [
                {"NumberExpression": {"Evaluate": {"Attribute": "MESSAGE_SIZE"}, "Operator": "GREATER_THAN",
                                      "Value": 1000000.0}},
                {"StringExpression": {"Evaluate": {"MimeHeaderAttribute": "X-Priority"}, "Operator": "EQUALS",
                                      "Values": ["1"]}},
            ],
            "Actions": [{"Drop": {}}],
        },
        {
            "Name": "rewrite",
            "Conditions": [
                {"StringExpression": {"Evaluate": {"Attribute": "RECIPIENT"}, "Operator": "ENDS_WITH",
                                      "Values": ["@old.example"]}},
            ],
            "Actions": [{"ReplaceRecipient": {"ReplaceWith": ["inbox@new.example"]}}],
        },
    ]


class RuleSetTests:
    def archive_id(self):
        return support.gateway(self.mm)["ArchiveId"]

    def test_create_get_list_update_delete(self):
        archive = self.archive_id()
        rules = sample_rules(archive)
        name = self.name("rs")
        before = support.now()
        rs = self.mm.create_rule_set(RuleSetName=name, Rules=rules)["RuleSetId"]
        self.assertId(RS, rs)

        got = self.mm.get_rule_set(RuleSetId=rs)
        self.assertEqual(got["RuleSetId"], rs)
        self.assertArn(RS, rs, got["RuleSetArn"])
        self.assertEqual(got["RuleSetName"], name)
        self.assertEqual(got["Rules"], rules)
        self.assertRecent(got["CreatedDate"], before)
        self.assertGreaterEqual(got["LastModificationDate"], got["CreatedDate"])

        listed = support.find_one(
            support.list_all(self.mm, "list_rule_sets", "RuleSets"), "RuleSetName", name)
        self.assertEqual(listed["RuleSetId"], rs)
        self.assertEqual(listed["LastModificationDate"], got["LastModificationDate"])

        # UpdateRuleSet replaces every rule; CreatedDate stays.
        renamed = self.name("rs-renamed")
        new_rules = rules[1:]
        self.mm.update_rule_set(RuleSetId=rs, RuleSetName=renamed, Rules=new_rules)
        updated = self.mm.get_rule_set(RuleSetId=rs)
        self.assertEqual(updated["RuleSetName"], renamed)
        self.assertEqual(updated["Rules"], new_rules)
        self.assertEqual(updated["CreatedDate"], got["CreatedDate"])
        self.assertGreaterEqual(updated["LastModificationDate"], got["LastModificationDate"])

        # Members left out of an update keep their value.
        self.mm.update_rule_set(RuleSetId=rs, Rules=[])
        self.assertEqual(self.mm.get_rule_set(RuleSetId=rs)["RuleSetName"], renamed)
        self.mm.update_rule_set(RuleSetId=rs, RuleSetName=name)
        again = self.mm.get_rule_set(RuleSetId=rs)
        self.assertEqual((again["RuleSetName"], again["Rules"]), (name, []))

        self.mm.delete_rule_set(RuleSetId=rs)
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.get_rule_set(RuleSetId=rs)
        ids = [r["RuleSetId"] for r in support.list_all(self.mm, "list_rule_sets", "RuleSets")]
        self.assertNotIn(rs, ids)

    def test_references_by_name_id_and_arn(self):
        gw = support.gateway(self.mm)
        archive_arn = self.mm.get_archive(ArchiveId=gw["ArchiveId"])["ArchiveArn"]
        for target in (support.GATEWAY_ARCHIVE, gw["ArchiveId"], archive_arn):
            with self.subTest(target=target):
                rules = [{"Name": "keep", "Actions": [{"Archive": {"TargetArchive": target}}]}]
                rs = support.make_rule_set(self.mm, self.name("rs-ref"), rules)
                self.assertEqual(self.mm.get_rule_set(RuleSetId=rs)["Rules"], rules)

    def test_validation_names_the_field(self):
        archive = self.archive_id()
        good = {"Name": "ok", "Actions": [{"Archive": {"TargetArchive": archive}}]}
        cases = [
            ("RuleSetName", {"RuleSetName": "bad name!", "Rules": [good]}),
            ("RuleSetName", {"RuleSetName": "x" * 101, "Rules": [good]}),
            ("Rules", {"RuleSetName": self.name("rs-bad")}),
            ("Operator", {"RuleSetName": self.name("rs-bad"), "Rules": [dict(good, Conditions=[
                {"StringExpression": {"Evaluate": {"Attribute": "SUBJECT"}, "Operator": "EQUAL",
                                      "Values": ["x"]}}])]}),
            ("Attribute", {"RuleSetName": self.name("rs-bad"), "Rules": [dict(good, Conditions=[
                {"StringExpression": {"Evaluate": {"Attribute": "COLOUR"}, "Operator": "EQUALS",
                                      "Values": ["x"]}}])]}),
            ("Values", {"RuleSetName": self.name("rs-bad"), "Rules": [dict(good, Conditions=[
                {"StringExpression": {"Evaluate": {"Attribute": "SUBJECT"}, "Operator": "EQUALS",
                                      "Values": []}}])]}),
            ("Name", {"RuleSetName": self.name("rs-bad"), "Rules": [dict(good, Name="n" * 33)]}),
            ("Actions", {"RuleSetName": self.name("rs-bad"), "Rules": [dict(good, Actions=[])]}),
            ("Actions", {"RuleSetName": self.name("rs-bad"), "Rules": [dict(good, Actions=[
                {"Drop": {}, "Archive": {"TargetArchive": archive}}])]}),
            ("HeaderName", {"RuleSetName": self.name("rs-bad"), "Rules": [dict(good, Actions=[
                {"AddHeader": {"HeaderName": "Subject", "HeaderValue": "x"}}])]}),
            ("TargetArchive", {"RuleSetName": self.name("rs-bad"), "Rules": [dict(good, Actions=[
                {"Archive": {"TargetArchive": "no-such-archive"}}])]}),
            ("Values", {"RuleSetName": self.name("rs-bad"), "Rules": [dict(good, Conditions=[
                {"IpExpression": {"Evaluate": {"Attribute": "SOURCE_IP"}, "Operator": "CIDR_MATCHES",
                                  "Values": ["not-a-cidr"]}}])]}),
        ]
        before = {r["RuleSetName"] for r in support.list_all(self.mm, "list_rule_sets", "RuleSets")}
        for field, params in cases:
            with self.subTest(field=field, params=params):
                with self.assertApiError("ValidationException", field):
                    self.raw.create_rule_set(**params)
        after = {r["RuleSetName"] for r in support.list_all(self.mm, "list_rule_sets", "RuleSets")}
        self.assertEqual(after, before, "a refused request creates nothing")

        rs = support.make_rule_set(self.mm, self.name("rs-upd"))
        with self.assertApiError("ValidationException", "Operator"):
            self.raw.update_rule_set(RuleSetId=rs, Rules=[dict(good, Conditions=[
                {"StringExpression": {"Evaluate": {"Attribute": "SUBJECT"}, "Operator": "LIKE",
                                      "Values": ["x"]}}])])
        self.assertEqual(self.mm.get_rule_set(RuleSetId=rs)["Rules"],
                         [{"Name": "drop-all", "Actions": [{"Drop": {}}]}],
                         "a refused update changes nothing")

    def test_rules_per_rule_set_quota(self):
        quota = support.RULES_PER_RULE_SET
        rule = {"Actions": [{"Drop": {}}]}
        rs = support.make_rule_set(self.mm, self.name("rs-quota"), [rule] * quota)
        self.assertEqual(len(self.mm.get_rule_set(RuleSetId=rs)["Rules"]), quota)
        with self.assertApiError("ServiceQuotaExceededException", "Rules"):
            self.raw.create_rule_set(RuleSetName=self.name("rs-quota"), Rules=[rule] * (quota + 1))

    def test_unknown_rule_set(self):
        missing = support.missing_id("rs-")
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.get_rule_set(RuleSetId=missing)
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.update_rule_set(RuleSetId=missing, Rules=[])

    def test_names_are_unique(self):
        name = self.name("rs-dup")
        support.make_rule_set(self.mm, name)
        with self.assertApiError("ConflictException"):
            support.make_rule_set(self.mm, name)
        other = support.make_rule_set(self.mm, self.name("rs-dup"))
        with self.assertApiError("ConflictException"):
            self.mm.update_rule_set(RuleSetId=other, RuleSetName=name)

    def test_delete_in_use_conflicts(self):
        rs = support.make_rule_set(self.mm, self.name("rs-used"))
        inp = support.make_ingress_point(self.mm, self.name("inp-rs"), rule_set_id=rs)
        with self.assertApiError("ConflictException"):
            self.mm.delete_rule_set(RuleSetId=rs)
        self.mm.get_rule_set(RuleSetId=rs)
        self.mm.delete_ingress_point(IngressPointId=inp)
        self.mm.delete_rule_set(RuleSetId=rs)
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.get_rule_set(RuleSetId=rs)

    def test_client_token(self):
        rules = [{"Name": "drop", "Actions": [{"Drop": {}}]}]
        rs = self.assertIdempotent(
            self.mm.create_rule_set, "RuleSetId",
            {"RuleSetName": self.name("rs-token"), "Rules": rules},
            {"RuleSetName": self.name("rs-token")},
        )
        self.assertEqual(self.mm.get_rule_set(RuleSetId=rs)["Rules"], rules)

    def test_pagination(self):
        ids = [support.make_rule_set(self.mm, self.name("rs-page")) for _ in range(5)]
        self.assertPaged("list_rule_sets", "RuleSets", "RuleSetId", ids, 2)
        with self.assertApiError("ValidationException", "PageSize"):
            self.raw.list_rule_sets(PageSize=51)
        with self.assertApiError("ValidationException", "NextToken"):
            self.mm.list_rule_sets(NextToken="not-a-token-this-server-gave")


class RuleSetsOverJson(RuleSetTests, support.JsonCase):
    pass


class RuleSetsOverCbor(RuleSetTests, support.CborCase):
    pass
