"""Traffic policies: CreateTrafficPolicy, GetTrafficPolicy,
ListTrafficPolicies, UpdateTrafficPolicy, DeleteTrafficPolicy."""

import support

TP = "mailmanager-traffic-policy"

STATEMENTS = [
    {
        "Action": "DENY",
        "Conditions": [
            {"IpExpression": {"Evaluate": {"Attribute": "SENDER_IP"}, "Operator": "CIDR_MATCHES",
                              "Values": ["192.0.2.0/24", "198.51.100.0/24"]}},
        ],
    },
    {
        "Action": "ALLOW",
        "Conditions": [
            {"StringExpression": {"Evaluate": {"Attribute": "RECIPIENT"}, "Operator": "ENDS_WITH",
                                  "Values": ["@corp.test"]}},
            {"TlsExpression": {"Evaluate": {"Attribute": "TLS_PROTOCOL"}, "Operator": "MINIMUM_TLS_VERSION",
                               "Value": "TLS1_2"}},
        ],
    },
    {
        "Action": "DENY",
        "Conditions": [
            {"Ipv6Expression": {"Evaluate": {"Attribute": "SENDER_IPV6"}, "Operator": "CIDR_MATCHES",
                                "Values": ["2001:db8::/32"]}},
        ],
    },
]


class TrafficPolicyTests:
    def test_create_get_list_update_delete(self):
        name = self.name("tp")
        before = support.now()
        tp = self.mm.create_traffic_policy(
            TrafficPolicyName=name, PolicyStatements=STATEMENTS, DefaultAction="DENY",
            MaxMessageSizeBytes=1048576,
        )["TrafficPolicyId"]
        self.assertId(TP, tp)

        got = self.mm.get_traffic_policy(TrafficPolicyId=tp)
        self.assertEqual(got["TrafficPolicyId"], tp)
        self.assertEqual(got["TrafficPolicyName"], name)
        self.assertArn(TP, tp, got["TrafficPolicyArn"])
        self.assertEqual(got["PolicyStatements"], STATEMENTS)
        self.assertEqual(got["DefaultAction"], "DENY")
        self.assertEqual(got["MaxMessageSizeBytes"], 1048576)
        self.assertRecent(got["CreatedTimestamp"], before)
        self.assertGreaterEqual(got["LastUpdatedTimestamp"], got["CreatedTimestamp"])

        listed = support.find_one(
            support.list_all(self.mm, "list_traffic_policies", "TrafficPolicies"), "TrafficPolicyName", name)
        self.assertEqual(listed, {"TrafficPolicyName": name, "TrafficPolicyId": tp, "DefaultAction": "DENY"})

        renamed = self.name("tp-renamed")
        self.mm.update_traffic_policy(
            TrafficPolicyId=tp, TrafficPolicyName=renamed, PolicyStatements=STATEMENTS[:1],
            DefaultAction="ALLOW", MaxMessageSizeBytes=2048)
        updated = self.mm.get_traffic_policy(TrafficPolicyId=tp)
        self.assertEqual(updated["TrafficPolicyName"], renamed)
        self.assertEqual(updated["PolicyStatements"], STATEMENTS[:1])
        self.assertEqual(updated["DefaultAction"], "ALLOW")
        self.assertEqual(updated["MaxMessageSizeBytes"], 2048)
        self.assertEqual(updated["CreatedTimestamp"], got["CreatedTimestamp"])
        self.assertGreaterEqual(updated["LastUpdatedTimestamp"], got["LastUpdatedTimestamp"])

        # Members left out of an update keep their value.
        self.mm.update_traffic_policy(TrafficPolicyId=tp, DefaultAction="DENY")
        partial = self.mm.get_traffic_policy(TrafficPolicyId=tp)
        self.assertEqual(
            (partial["TrafficPolicyName"], partial["PolicyStatements"], partial["MaxMessageSizeBytes"],
             partial["DefaultAction"]),
            (renamed, STATEMENTS[:1], 2048, "DENY"))

        self.mm.delete_traffic_policy(TrafficPolicyId=tp)
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.get_traffic_policy(TrafficPolicyId=tp)
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.delete_traffic_policy(TrafficPolicyId=tp)
        ids = [t["TrafficPolicyId"] for t in support.list_all(self.mm, "list_traffic_policies", "TrafficPolicies")]
        self.assertNotIn(tp, ids)

    def test_address_list_condition(self):
        al = support.make_address_list(self.mm, self.name("al-tp"))
        al_arn = self.mm.get_address_list(AddressListId=al)["AddressListArn"]
        statements = [{"Action": "ALLOW", "Conditions": [
            {"BooleanExpression": {"Evaluate": {"IsInAddressList": {"Attribute": "RECIPIENT",
                                                                    "AddressLists": [al_arn]}},
                                   "Operator": "IS_TRUE"}}]}]
        tp = support.make_traffic_policy(self.mm, self.name("tp-al"), PolicyStatements=statements,
                                         DefaultAction="DENY")
        self.assertEqual(self.mm.get_traffic_policy(TrafficPolicyId=tp)["PolicyStatements"], statements)
        # The list is in use: it cannot go while the policy reads it.
        with self.assertApiError("ConflictException"):
            self.mm.delete_address_list(AddressListId=al)
        self.mm.update_traffic_policy(TrafficPolicyId=tp, PolicyStatements=[])
        self.mm.delete_address_list(AddressListId=al)

    def test_validation_names_the_field(self):
        ok = {"TrafficPolicyName": self.name("tp-bad"), "PolicyStatements": [], "DefaultAction": "ALLOW"}
        cases = [
            ("TrafficPolicyName", dict(ok, TrafficPolicyName="no spaces allowed")),
            ("TrafficPolicyName", dict(ok, TrafficPolicyName="ab")),
            ("TrafficPolicyName", dict(ok, TrafficPolicyName="t" * 64)),
            ("DefaultAction", dict(ok, DefaultAction="MAYBE")),
            ("DefaultAction", {k: v for k, v in ok.items() if k != "DefaultAction"}),
            ("PolicyStatements", {k: v for k, v in ok.items() if k != "PolicyStatements"}),
            ("MaxMessageSizeBytes", dict(ok, MaxMessageSizeBytes=0)),
            ("Conditions", dict(ok, PolicyStatements=[{"Action": "ALLOW", "Conditions": []}])),
            ("Action", dict(ok, PolicyStatements=[{"Action": "PERMIT", "Conditions": STATEMENTS[0]["Conditions"]}])),
            ("Values", dict(ok, PolicyStatements=[{"Action": "DENY", "Conditions": [
                {"IpExpression": {"Evaluate": {"Attribute": "SENDER_IP"}, "Operator": "CIDR_MATCHES",
                                  "Values": ["300.1.2.3/8"]}}]}])),
            ("Attribute", dict(ok, PolicyStatements=[{"Action": "DENY", "Conditions": [
                {"StringExpression": {"Evaluate": {"Attribute": "SUBJECT"}, "Operator": "EQUALS",
                                      "Values": ["x"]}}]}])),
        ]
        for field, params in cases:
            with self.subTest(field=field, params=params):
                with self.assertApiError("ValidationException", field):
                    self.raw.create_traffic_policy(**params)

    def test_unknown_traffic_policy(self):
        missing = support.missing_id("tp-")
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.get_traffic_policy(TrafficPolicyId=missing)
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.update_traffic_policy(TrafficPolicyId=missing, DefaultAction="DENY")
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.delete_traffic_policy(TrafficPolicyId=missing)

    def test_names_are_unique(self):
        name = self.name("tp-dup")
        support.make_traffic_policy(self.mm, name)
        with self.assertApiError("ConflictException"):
            support.make_traffic_policy(self.mm, name)

    def test_delete_in_use_conflicts(self):
        tp = support.make_traffic_policy(self.mm, self.name("tp-used"))
        inp = support.make_ingress_point(self.mm, self.name("inp-tp"), traffic_policy_id=tp)
        with self.assertApiError("ConflictException"):
            self.mm.delete_traffic_policy(TrafficPolicyId=tp)
        self.mm.get_traffic_policy(TrafficPolicyId=tp)
        self.mm.delete_ingress_point(IngressPointId=inp)
        self.mm.delete_traffic_policy(TrafficPolicyId=tp)

    def test_client_token(self):
        self.assertIdempotent(
            self.mm.create_traffic_policy, "TrafficPolicyId",
            dict(support.ALLOW_ALL, TrafficPolicyName=self.name("tp-token")),
            {"TrafficPolicyName": self.name("tp-token")},
        )

    def test_pagination(self):
        ids = [support.make_traffic_policy(self.mm, self.name("tp-page")) for _ in range(4)]
        self.assertPaged("list_traffic_policies", "TrafficPolicies", "TrafficPolicyId", ids, 3)
        with self.assertApiError("ValidationException", "PageSize"):
            self.raw.list_traffic_policies(PageSize=0)


class TrafficPoliciesOverJson(TrafficPolicyTests, support.JsonCase):
    pass


class TrafficPoliciesOverCbor(TrafficPolicyTests, support.CborCase):
    pass
