"""Ingress points: CreateIngressPoint, GetIngressPoint, ListIngressPoints,
UpdateIngressPoint, DeleteIngressPoint."""

import support

INP = "mailmanager-ingress-point"
PASSWORD = "S3cret-Passw0rd!"


class IngressPointTests:
    def test_open_lifecycle(self):
        rs = support.make_rule_set(self.mm, self.name("rs-inp"))
        tp = support.make_traffic_policy(self.mm, self.name("tp-inp"))
        name = self.name("inp")
        before = support.now()
        inp = self.mm.create_ingress_point(
            IngressPointName=name, Type="OPEN", RuleSetId=rs, TrafficPolicyId=tp,
            NetworkConfiguration={"PublicNetworkConfiguration": {"IpType": "IPV4"}},
            TlsPolicy="OPTIONAL",
        )["IngressPointId"]
        self.assertId(INP, inp)

        # Created through the API, it has no listener until a start gives it
        # one (docs/api.md): PROVISIONING.
        got = self.mm.get_ingress_point(IngressPointId=inp)
        self.assertEqual(got["Status"], "PROVISIONING")
        self.assertEqual(got["IngressPointId"], inp)
        self.assertEqual(got["IngressPointName"], name)
        self.assertArn(INP, inp, got["IngressPointArn"])
        self.assertEqual(got["Type"], "OPEN")
        self.assertEqual(got["RuleSetId"], rs)
        self.assertEqual(got["TrafficPolicyId"], tp)
        self.assertEqual(got["NetworkConfiguration"], {"PublicNetworkConfiguration": {"IpType": "IPV4"}})
        self.assertEqual(got["TlsPolicy"], "OPTIONAL")
        self.assertNotIn("IngressPointAuthConfiguration", got)
        self.assertRecent(got["CreatedTimestamp"], before)
        self.assertGreaterEqual(got["LastUpdatedTimestamp"], got["CreatedTimestamp"])

        listed = support.find_one(
            support.list_all(self.mm, "list_ingress_points", "IngressPoints"), "IngressPointName", name)
        self.assertEqual(listed["IngressPointId"], inp)
        self.assertEqual(listed["Status"], "PROVISIONING")
        self.assertEqual(listed["Type"], "OPEN")

        # Another rule set and traffic policy, a new name, a TLS policy.
        rs2 = support.make_rule_set(self.mm, self.name("rs-inp2"))
        tp2 = support.make_traffic_policy(self.mm, self.name("tp-inp2"))
        renamed = self.name("inp-renamed")
        self.mm.update_ingress_point(IngressPointId=inp, IngressPointName=renamed, RuleSetId=rs2,
                                     TrafficPolicyId=tp2, TlsPolicy="REQUIRED")
        updated = self.mm.get_ingress_point(IngressPointId=inp)
        self.assertEqual(
            (updated["IngressPointName"], updated["RuleSetId"], updated["TrafficPolicyId"], updated["TlsPolicy"]),
            (renamed, rs2, tp2, "REQUIRED"))
        self.assertEqual(updated["CreatedTimestamp"], got["CreatedTimestamp"])
        self.assertGreaterEqual(updated["LastUpdatedTimestamp"], got["LastUpdatedTimestamp"])
        # The rule set it left can go now; the one it uses cannot.
        self.mm.delete_rule_set(RuleSetId=rs)
        with self.assertApiError("ConflictException"):
            self.mm.delete_rule_set(RuleSetId=rs2)

        # Closed, then open again (still without a listener).
        self.mm.update_ingress_point(IngressPointId=inp, StatusToUpdate="CLOSED")
        self.assertEqual(self.mm.get_ingress_point(IngressPointId=inp)["Status"], "CLOSED")
        listed = support.find_one(
            support.list_all(self.mm, "list_ingress_points", "IngressPoints"), "IngressPointName", renamed)
        self.assertEqual(listed["Status"], "CLOSED")
        self.mm.update_ingress_point(IngressPointId=inp, StatusToUpdate="ACTIVE")
        self.assertEqual(self.mm.get_ingress_point(IngressPointId=inp)["Status"], "PROVISIONING")

        self.mm.delete_ingress_point(IngressPointId=inp)
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.get_ingress_point(IngressPointId=inp)
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.delete_ingress_point(IngressPointId=inp)
        ids = [i["IngressPointId"] for i in support.list_all(self.mm, "list_ingress_points", "IngressPoints")]
        self.assertNotIn(inp, ids)

    def test_the_gateway_ingress_point(self):
        gw = support.gateway(self.mm)
        got = self.mm.get_ingress_point(IngressPointId=gw["IngressPointId"])
        self.assertEqual(got["IngressPointName"], support.GATEWAY_INGRESS_POINT)
        self.assertEqual(got["Status"], "ACTIVE")
        self.assertEqual(got["ARecord"], support.SMTP)
        self.assertEqual(got["Type"], "OPEN")
        self.assertArn(INP, gw["IngressPointId"], got["IngressPointArn"])
        listed = support.find_one(support.list_all(self.mm, "list_ingress_points", "IngressPoints"),
                                      "IngressPointName", support.GATEWAY_INGRESS_POINT)
        self.assertEqual(listed["Status"], "ACTIVE")
        # It has listeners: close it rather than delete it.
        with self.assertApiError("ConflictException"):
            self.mm.delete_ingress_point(IngressPointId=gw["IngressPointId"])
        self.assertEqual(self.mm.get_ingress_point(IngressPointId=gw["IngressPointId"])["Status"], "ACTIVE")

    def test_auth_with_password_never_shows_it(self):
        inp = support.make_ingress_point(
            self.mm, self.name("inp-auth"), Type="AUTH",
            IngressPointConfiguration={"SmtpPassword": PASSWORD})
        got = self.mm.get_ingress_point(IngressPointId=inp)
        self.assertEqual(got["Type"], "AUTH")
        self.assertIn("IngressPointPasswordConfiguration", got["IngressPointAuthConfiguration"])
        self.assertNotIn("SecretArn", got["IngressPointAuthConfiguration"])
        self.assertNotIn(PASSWORD, repr(got))

        self.mm.update_ingress_point(IngressPointId=inp,
                                     IngressPointConfiguration={"SmtpPassword": PASSWORD + "2"})
        got = self.mm.get_ingress_point(IngressPointId=inp)
        self.assertIn("IngressPointPasswordConfiguration", got["IngressPointAuthConfiguration"])
        self.assertNotIn(PASSWORD, repr(got))

    def test_auth_with_secret(self):
        inp = support.make_ingress_point(
            self.mm, self.name("inp-secret"), Type="AUTH",
            IngressPointConfiguration={"SecretArn": support.SECRET_ARN})
        got = self.mm.get_ingress_point(IngressPointId=inp)
        self.assertEqual(got["IngressPointAuthConfiguration"]["SecretArn"], support.SECRET_ARN)

    def test_mtls_trust_store_is_shown_only_when_asked(self):
        inp = support.make_ingress_point(
            self.mm, self.name("inp-mtls"), Type="MTLS",
            IngressPointConfiguration={"TlsAuthConfiguration": {"TrustStore": {"CAContent": support.TEST_CA_PEM}}})
        included = self.mm.get_ingress_point(IngressPointId=inp, IncludeTrustStoreContents="INCLUDE")
        self.assertEqual(included["Type"], "MTLS")
        self.assertEqual(
            included["IngressPointAuthConfiguration"]["TlsAuthConfiguration"]["TrustStore"]["CAContent"],
            support.TEST_CA_PEM)
        for params in ({}, {"IncludeTrustStoreContents": "EXCLUDE"}):
            with self.subTest(params=params):
                excluded = self.mm.get_ingress_point(IngressPointId=inp, **params)
                self.assertIn("TlsAuthConfiguration", excluded["IngressPointAuthConfiguration"])
                self.assertNotIn("BEGIN CERTIFICATE", repr(excluded))

    def test_validation_names_the_field(self):
        rs = support.make_rule_set(self.mm, self.name("rs-inpbad"))
        tp = support.make_traffic_policy(self.mm, self.name("tp-inpbad"))
        ok = {"IngressPointName": self.name("inp-bad"), "Type": "OPEN", "RuleSetId": rs, "TrafficPolicyId": tp}
        cases = [
            ("IngressPointName", dict(ok, IngressPointName="ab")),
            ("IngressPointName", dict(ok, IngressPointName="has space")),
            ("Type", dict(ok, Type="SMTP")),
            ("RuleSetId", {k: v for k, v in ok.items() if k != "RuleSetId"}),
            ("RuleSetId", dict(ok, RuleSetId=support.missing_id("rs-"))),
            ("TrafficPolicyId", dict(ok, TrafficPolicyId=support.missing_id("tp-"))),
            ("IngressPointConfiguration", dict(ok, Type="AUTH")),
            ("IngressPointConfiguration", dict(ok, IngressPointConfiguration={"SmtpPassword": PASSWORD})),
            ("SmtpPassword", dict(ok, Type="AUTH", IngressPointConfiguration={"SmtpPassword": "short"})),
            ("SecretArn", dict(ok, Type="AUTH", IngressPointConfiguration={"SecretArn": "arn:aws:s3:::bucket"})),
            ("CAContent", dict(ok, Type="MTLS", IngressPointConfiguration={
                "TlsAuthConfiguration": {"TrustStore": {"CAContent": "not a certificate"}}})),
            ("TlsPolicy", dict(ok, TlsPolicy="SOMETIMES")),
            ("IpType", dict(ok, NetworkConfiguration={"PublicNetworkConfiguration": {"IpType": "IPV5"}})),
        ]
        for field, params in cases:
            with self.subTest(field=field, params=params):
                with self.assertApiError("ValidationException", field):
                    self.raw.create_ingress_point(**params)
        names = {i["IngressPointName"] for i in support.list_all(self.mm, "list_ingress_points", "IngressPoints")}
        self.assertNotIn(ok["IngressPointName"], names, "a refused request creates nothing")

        inp = support.make_ingress_point(self.mm, self.name("inp-upd"), rule_set_id=rs, traffic_policy_id=tp)
        with self.assertApiError("ValidationException", "StatusToUpdate"):
            self.raw.update_ingress_point(IngressPointId=inp, StatusToUpdate="PAUSED")
        self.assertEqual(self.mm.get_ingress_point(IngressPointId=inp)["RuleSetId"], rs)

    def test_unknown_ingress_point(self):
        missing = support.missing_id("inp-")
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.get_ingress_point(IngressPointId=missing)
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.update_ingress_point(IngressPointId=missing, StatusToUpdate="CLOSED")
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.delete_ingress_point(IngressPointId=missing)

    def test_names_are_unique(self):
        name = self.name("inp-dup")
        support.make_ingress_point(self.mm, name)
        with self.assertApiError("ConflictException"):
            support.make_ingress_point(self.mm, name)

    def test_client_token(self):
        rs = support.make_rule_set(self.mm, self.name("rs-inptok"))
        tp = support.make_traffic_policy(self.mm, self.name("tp-inptok"))
        self.assertIdempotent(
            self.mm.create_ingress_point, "IngressPointId",
            {"IngressPointName": self.name("inp-token"), "Type": "OPEN", "RuleSetId": rs, "TrafficPolicyId": tp},
            {"IngressPointName": self.name("inp-token")},
        )

    def test_pagination(self):
        rs = support.make_rule_set(self.mm, self.name("rs-inppage"))
        tp = support.make_traffic_policy(self.mm, self.name("tp-inppage"))
        ids = [support.make_ingress_point(self.mm, self.name("inp-page"), rule_set_id=rs, traffic_policy_id=tp)
               for _ in range(4)]
        self.assertPaged("list_ingress_points", "IngressPoints", "IngressPointId", ids, 3)


class IngressPointsOverJson(IngressPointTests, support.JsonCase):
    pass


class IngressPointsOverCbor(IngressPointTests, support.CborCase):
    pass
