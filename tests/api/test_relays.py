"""Relays: CreateRelay, GetRelay, ListRelays, UpdateRelay, DeleteRelay."""

import support

RELAY = "mailmanager-smtp-relay"


class RelayTests:
    def test_create_get_list_update_delete(self):
        name = self.name("rl")
        before = support.now()
        relay = self.mm.create_relay(RelayName=name, ServerName="smtp.relay.test", ServerPort=587,
                                     Authentication={"NoAuthentication": {}})["RelayId"]
        self.assertId(RELAY, relay)

        got = self.mm.get_relay(RelayId=relay)
        self.assertEqual(got["RelayId"], relay)
        self.assertArn(RELAY, relay, got["RelayArn"])
        self.assertEqual(got["RelayName"], name)
        self.assertEqual(got["ServerName"], "smtp.relay.test")
        self.assertEqual(got["ServerPort"], 587)
        self.assertEqual(got["Authentication"], {"NoAuthentication": {}})
        self.assertRecent(got["CreatedTimestamp"], before)
        self.assertGreaterEqual(got["LastModifiedTimestamp"], got["CreatedTimestamp"])

        listed = support.find_one(support.list_all(self.mm, "list_relays", "Relays"), "RelayName", name)
        self.assertEqual(listed, {"RelayId": relay, "RelayName": name,
                                  "LastModifiedTimestamp": got["LastModifiedTimestamp"]})

        renamed = self.name("rl-renamed")
        self.mm.update_relay(RelayId=relay, RelayName=renamed, ServerName="mx2.relay.test", ServerPort=2525,
                             Authentication={"SecretArn": support.SECRET_ARN})
        updated = self.mm.get_relay(RelayId=relay)
        self.assertEqual(
            (updated["RelayName"], updated["ServerName"], updated["ServerPort"], updated["Authentication"]),
            (renamed, "mx2.relay.test", 2525, {"SecretArn": support.SECRET_ARN}))
        self.assertEqual(updated["CreatedTimestamp"], got["CreatedTimestamp"])
        self.assertGreaterEqual(updated["LastModifiedTimestamp"], got["LastModifiedTimestamp"])

        # Members left out of an update keep their value.
        self.mm.update_relay(RelayId=relay, ServerPort=465)
        partial = self.mm.get_relay(RelayId=relay)
        self.assertEqual((partial["RelayName"], partial["ServerName"], partial["ServerPort"]),
                         (renamed, "mx2.relay.test", 465))

        self.mm.delete_relay(RelayId=relay)
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.get_relay(RelayId=relay)
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.delete_relay(RelayId=relay)
        self.assertNotIn(relay, [r["RelayId"] for r in support.list_all(self.mm, "list_relays", "Relays")])

    def test_relay_with_secret(self):
        relay = support.make_relay(self.mm, self.name("rl-secret"), Authentication={"SecretArn": support.SECRET_ARN})
        self.assertEqual(self.mm.get_relay(RelayId=relay)["Authentication"], {"SecretArn": support.SECRET_ARN})

    def test_validation_names_the_field(self):
        ok = {"RelayName": self.name("rl-bad"), "ServerName": "smtp.relay.test", "ServerPort": 25,
              "Authentication": {"NoAuthentication": {}}}
        cases = [
            ("RelayName", dict(ok, RelayName="no spaces")),
            ("ServerName", dict(ok, ServerName="bad_host!")),
            ("ServerPort", dict(ok, ServerPort=65536)),
            ("ServerPort", dict(ok, ServerPort=0)),
            ("Authentication", {k: v for k, v in ok.items() if k != "Authentication"}),
            ("Authentication", dict(ok, Authentication={})),
            ("Authentication", dict(ok, Authentication={"NoAuthentication": {}, "SecretArn": support.SECRET_ARN})),
            ("SecretArn", dict(ok, Authentication={"SecretArn": "arn:aws:s3:::not-a-secret"})),
            # A secret Server.Secrets does not map: the relay could not log in.
            ("SecretArn", dict(ok, Authentication={
                "SecretArn": "arn:aws:secretsmanager:us-east-1:000000000000:secret:not-mapped"})),
        ]
        for field, params in cases:
            with self.subTest(field=field, params=params):
                with self.assertApiError("ValidationException", field):
                    self.raw.create_relay(**params)
        names = {r["RelayName"] for r in support.list_all(self.mm, "list_relays", "Relays")}
        self.assertNotIn(ok["RelayName"], names, "a refused request creates nothing")

    def test_unknown_relay(self):
        missing = support.missing_id("rl-")
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.get_relay(RelayId=missing)
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.update_relay(RelayId=missing, ServerPort=25)
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.delete_relay(RelayId=missing)

    def test_names_are_unique(self):
        name = self.name("rl-dup")
        support.make_relay(self.mm, name)
        with self.assertApiError("ConflictException"):
            support.make_relay(self.mm, name)

    def test_delete_in_use_conflicts(self):
        relay = support.make_relay(self.mm, self.name("rl-used"))
        rs = support.make_rule_set(self.mm, self.name("rs-relay"), [
            {"Name": "relay", "Actions": [{"Relay": {"Relay": relay, "MailFrom": "PRESERVE"}}]}])
        with self.assertApiError("ConflictException"):
            self.mm.delete_relay(RelayId=relay)
        self.mm.update_rule_set(RuleSetId=rs, Rules=[])
        self.mm.delete_relay(RelayId=relay)

    def test_client_token(self):
        self.assertIdempotent(
            self.mm.create_relay, "RelayId",
            {"RelayName": self.name("rl-token"), "ServerName": "smtp.relay.test", "ServerPort": 25,
             "Authentication": {"NoAuthentication": {}}},
            {"RelayName": self.name("rl-token")},
        )

    def test_pagination(self):
        ids = [support.make_relay(self.mm, self.name("rl-page")) for _ in range(4)]
        self.assertPaged("list_relays", "Relays", "RelayId", ids, 3)


class RelaysOverJson(RelayTests, support.JsonCase):
    pass


class RelaysOverCbor(RelayTests, support.CborCase):
    pass
