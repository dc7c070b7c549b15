"""What the API changes reaches SMTP at once, without a restart: a rule
set updated through UpdateRuleSet decides the fate of the next message, a
traffic policy updated through UpdateTrafficPolicy the next RCPT, and a
member registered through RegisterMemberToAddressList the next rule
evaluation. Messages are found again with StartArchiveSearch /
GetArchiveSearch / GetArchiveSearchResults, GetArchiveMessage (its link
downloaded) and GetArchiveMessageContent."""

import datetime

import support


def recipient_rule(name, recipient, action):
    return {"Name": name,
            "Conditions": [{"StringExpression": {"Evaluate": {"Attribute": "RECIPIENT"}, "Operator": "EQUALS",
                                                 "Values": [recipient]}}],
            "Actions": [action]}


DROP = {"Drop": {}}


class SmtpEffectTests:
    def setUp(self):
        self.gw = support.gateway(self.mm)
        self.archive_action = {"Archive": {"TargetArchive": self.gw["ArchiveId"]}}
        self.start = support.now().replace(microsecond=0) - datetime.timedelta(minutes=1)
        # Leave the gateway archiving everything, as the config has it.
        self.addCleanup(support.set_gateway_rules, self.mm, support.archive_rules(self.gw["ArchiveId"]))

    def set_rules(self, rules):
        self.mm.update_rule_set(RuleSetId=self.gw["RuleSetId"], Rules=rules)
        self.assertEqual(self.mm.get_rule_set(RuleSetId=self.gw["RuleSetId"])["Rules"], rules)

    def deliver(self, subject, recipient, body):
        """Sends a message; returns (its bytes, its trace record)."""
        data = support.message(subject, recipient, body=body)
        queue_id = support.send("alice@sender.test", [recipient], data)
        return data, support.wait_trace(queue_id)

    def assertDropped(self, record, rule):
        self.assertEqual([r["Dropped"] for r in record["Recipients"]], [True], record)
        self.assertEqual([k for k, _ in support.actions_of(record)], ["Drop"], record)
        self.assertEqual([r["Rule"] for r in record["Recipients"][0]["Rules"]], [rule], record)

    def assertArchived(self, record, rule):
        self.assertEqual([r["Dropped"] for r in record["Recipients"]], [False], record)
        self.assertEqual([k for k, _ in support.actions_of(record)], ["Archive"], record)
        self.assertEqual([r["Rule"] for r in record["Recipients"][0]["Rules"]], [rule], record)

    def found(self, token):
        """Rows of the gateway archive whose subject holds `token`."""
        end = support.now().replace(microsecond=0) + datetime.timedelta(minutes=1)
        _, rows = self.search_archive(self.gw["ArchiveId"], self.start, end, filters=support.subject_filter(token))
        return rows

    def assertSameBytes(self, row, data, body):
        message_id = row["ArchivedMessageId"]
        got = self.mm.get_archive_message(ArchivedMessageId=message_id)
        self.assertEqual(got["Metadata"]["RuleSetId"], self.gw["RuleSetId"])
        self.assertEqual(got["Metadata"]["IngressPointId"], self.gw["IngressPointId"])
        status, downloaded = support.http_get(got["MessageDownloadLink"])
        self.assertEqual(status, 200)
        self.assertEqual(downloaded, support.archived_file(self.gw["ArchiveId"], message_id))
        self.assertTrue(downloaded.endswith(data.encode()), "the archived bytes end with the sent bytes")
        content = self.mm.get_archive_message_content(ArchivedMessageId=message_id)
        self.assertIn(body.strip(), content["Body"]["Text"])

    def test_drop_then_archive(self):
        token = self.name("d2a")
        recipient = f"{token}@corp.test"
        self.set_rules([recipient_rule("drop-it", recipient, DROP), {"Name": "keep", "Actions": [self.archive_action]}])
        _, record = self.deliver(f"first {token}", recipient, "The first one is dropped.\r\n")
        self.assertDropped(record, "drop-it")

        self.set_rules([{"Name": "keep", "Actions": [self.archive_action]}])
        body = "The second one is archived.\r\n"
        data, record = self.deliver(f"second {token}", recipient, body)
        self.assertArchived(record, "keep")

        rows = self.found(token)
        self.assertEqual([r["Subject"] for r in rows], [f"second {token}"])
        self.assertEqual(rows[0]["Envelope"]["To"], [recipient])
        self.assertSameBytes(rows[0], data, body)

    def test_archive_then_drop(self):
        token = self.name("a2d")
        recipient = f"{token}@corp.test"
        self.set_rules([{"Name": "keep", "Actions": [self.archive_action]}])
        body = "The first one is archived.\r\n"
        data, record = self.deliver(f"first {token}", recipient, body)
        self.assertArchived(record, "keep")

        self.set_rules([recipient_rule("drop-it", recipient, DROP), {"Name": "keep", "Actions": [self.archive_action]}])
        _, record = self.deliver(f"second {token}", recipient, "The second one is dropped.\r\n")
        self.assertDropped(record, "drop-it")

        # Other recipients are still archived.
        other = f"other-{token}@corp.test"
        _, record = self.deliver(f"third {token}", other, "Another recipient.\r\n")
        self.assertArchived(record, "keep")

        rows = self.found(token)
        self.assertEqual(sorted(r["Subject"] for r in rows), [f"first {token}", f"third {token}"])
        first = next(r for r in rows if r["Subject"] == f"first {token}")
        self.assertSameBytes(first, data, body)

    def test_address_list_member_changes_the_next_message(self):
        token = self.name("al")
        recipient = f"{token}@corp.test"
        al = support.make_address_list(self.mm, self.name("al-smtp"))
        al_arn = self.mm.get_address_list(AddressListId=al)["AddressListArn"]
        listed = {"Name": "listed", "Conditions": [{"BooleanExpression": {
            "Evaluate": {"IsInAddressList": {"Attribute": "RECIPIENT", "AddressLists": [al_arn]}},
            "Operator": "IS_TRUE"}}], "Actions": [DROP]}
        self.set_rules([listed, {"Name": "keep", "Actions": [self.archive_action]}])

        _, record = self.deliver(f"before {token}", recipient, "Not listed yet.\r\n")
        self.assertArchived(record, "keep")
        self.mm.register_member_to_address_list(AddressListId=al, Address=recipient)
        _, record = self.deliver(f"listed {token}", recipient, "Listed now.\r\n")
        self.assertDropped(record, "listed")
        self.mm.deregister_member_from_address_list(AddressListId=al, Address=recipient)
        _, record = self.deliver(f"after {token}", recipient, "Not listed any more.\r\n")
        self.assertArchived(record, "keep")
        self.assertEqual(sorted(r["Subject"] for r in self.found(token)), [f"after {token}", f"before {token}"])

    def test_traffic_policy_update_decides_the_next_rcpt(self):
        tp = self.gw["TrafficPolicyId"]
        original = self.mm.get_traffic_policy(TrafficPolicyId=tp)
        restore = {k: original[k] for k in ("PolicyStatements", "DefaultAction", "MaxMessageSizeBytes") if k in original}
        self.addCleanup(self.mm.update_traffic_policy, TrafficPolicyId=tp, **restore)

        blocked = f"{self.name('blocked')}@corp.test"
        allowed = f"{self.name('allowed')}@corp.test"
        self.assertEqual(support.rcpt_reply("alice@sender.test", blocked)[0], 250)

        self.mm.update_traffic_policy(TrafficPolicyId=tp, DefaultAction="ALLOW", PolicyStatements=[
            {"Action": "DENY", "Conditions": [{"StringExpression": {
                "Evaluate": {"Attribute": "RECIPIENT"}, "Operator": "EQUALS", "Values": [blocked]}}]}])
        code, text = support.rcpt_reply("alice@sender.test", blocked)
        self.assertEqual(code, 550, text)
        self.assertTrue(text.startswith("5.7.1"), text)
        self.assertEqual(support.rcpt_reply("alice@sender.test", allowed)[0], 250)

        self.mm.update_traffic_policy(TrafficPolicyId=tp, DefaultAction="DENY", PolicyStatements=[])
        self.assertEqual(support.rcpt_reply("alice@sender.test", allowed)[0], 550)

        self.mm.update_traffic_policy(TrafficPolicyId=tp, DefaultAction="ALLOW", PolicyStatements=[])
        self.assertEqual(support.rcpt_reply("alice@sender.test", blocked)[0], 250)


    def test_closed_ingress_point_turns_connections_away(self):
        inp = self.gw["IngressPointId"]
        self.addCleanup(self.mm.update_ingress_point, IngressPointId=inp, StatusToUpdate="ACTIVE")
        self.assertEqual(support.greeting()[0], 220)
        self.mm.update_ingress_point(IngressPointId=inp, StatusToUpdate="CLOSED")
        self.assertEqual(self.mm.get_ingress_point(IngressPointId=inp)["Status"], "CLOSED")
        code, text = support.greeting()
        self.assertEqual(code, 421, text)
        self.assertTrue(text.startswith("4.3.2"), text)
        self.mm.update_ingress_point(IngressPointId=inp, StatusToUpdate="ACTIVE")
        self.assertEqual(self.mm.get_ingress_point(IngressPointId=inp)["Status"], "ACTIVE")
        self.assertEqual(support.greeting()[0], 220)


class SmtpEffectOverJson(SmtpEffectTests, support.JsonCase):
    pass


class SmtpEffectOverCbor(SmtpEffectTests, support.CborCase):
    pass
