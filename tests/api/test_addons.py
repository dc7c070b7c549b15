"""Add-ons: CreateAddonSubscription, GetAddonSubscription,
ListAddonSubscriptions, DeleteAddonSubscription, CreateAddonInstance,
GetAddonInstance, ListAddonInstances, DeleteAddonInstance.

One subscription per AddonName and one instance per subscription: every
test removes what it made, so that the next one (and the run over the
other protocol) may subscribe again."""

import uuid

from botocore.exceptions import ClientError

import support

SUBSCRIPTION = "addon-subscription"
INSTANCE = "addon-instance"
AWS_ADDONS = ["SPAMHAUS_DBL", "ABUSIX_MAIL_INTELLIGENCE", "VADE_ADVANCED_EMAIL_SECURITY", "TRENDMICRO_VSAPI"]
POSTERN_ADDONS = ["POSTERN_DNSBL", "POSTERN_RSPAMD", "POSTERN_CLAMAV"]


class AddonTests:
    def _forget(self, delete, **params):
        try:
            delete(**params)
        except ClientError as e:
            if e.response["Error"]["Code"] != "ResourceNotFoundException":
                raise

    def _unsubscribe_all(self, addon_name):
        for s in support.list_all(self.mm, "list_addon_subscriptions", "AddonSubscriptions"):
            if s["AddonName"] == addon_name:
                self._forget(self.mm.delete_addon_subscription, AddonSubscriptionId=s["AddonSubscriptionId"])

    def subscribe(self, addon_name, **extra):
        sub = self.mm.create_addon_subscription(AddonName=addon_name, **extra)["AddonSubscriptionId"]
        self.addCleanup(self._forget, self.mm.delete_addon_subscription, AddonSubscriptionId=sub)
        return sub

    def instantiate(self, sub, **extra):
        inst = self.mm.create_addon_instance(AddonSubscriptionId=sub, **extra)["AddonInstanceId"]
        self.addCleanup(self._forget, self.mm.delete_addon_instance, AddonInstanceId=inst)
        return inst

    def test_subscription_and_instance_lifecycle(self):
        before = support.now()
        sub = self.subscribe("SPAMHAUS_DBL")
        self.assertId(SUBSCRIPTION, sub)
        got = self.mm.get_addon_subscription(AddonSubscriptionId=sub)
        self.assertEqual(got["AddonName"], "SPAMHAUS_DBL")
        self.assertArn(SUBSCRIPTION, sub, got["AddonSubscriptionArn"])
        self.assertRecent(got["CreatedTimestamp"], before)
        listed = support.find_one(
            support.list_all(self.mm, "list_addon_subscriptions", "AddonSubscriptions"), "AddonSubscriptionId", sub)
        self.assertEqual(listed, {"AddonSubscriptionId": sub, "AddonName": "SPAMHAUS_DBL",
                                  "AddonSubscriptionArn": got["AddonSubscriptionArn"],
                                  "CreatedTimestamp": got["CreatedTimestamp"]})

        inst = self.instantiate(sub)
        self.assertId(INSTANCE, inst)
        instance = self.mm.get_addon_instance(AddonInstanceId=inst)
        self.assertEqual(instance["AddonSubscriptionId"], sub)
        self.assertEqual(instance["AddonName"], "SPAMHAUS_DBL")
        self.assertArn(INSTANCE, inst, instance["AddonInstanceArn"])
        self.assertRecent(instance["CreatedTimestamp"], before)
        listed = support.find_one(
            support.list_all(self.mm, "list_addon_instances", "AddonInstances"), "AddonInstanceId", inst)
        self.assertEqual(listed, {"AddonInstanceId": inst, "AddonSubscriptionId": sub, "AddonName": "SPAMHAUS_DBL",
                                  "AddonInstanceArn": instance["AddonInstanceArn"],
                                  "CreatedTimestamp": instance["CreatedTimestamp"]})

        # One subscription per add-on, one instance per subscription.
        with self.assertApiError("ConflictException"):
            self.mm.create_addon_subscription(AddonName="SPAMHAUS_DBL")
        with self.assertApiError("ConflictException"):
            self.mm.create_addon_instance(AddonSubscriptionId=sub)
        # A subscription with an instance cannot go.
        with self.assertApiError("ConflictException"):
            self.mm.delete_addon_subscription(AddonSubscriptionId=sub)

        self.mm.delete_addon_instance(AddonInstanceId=inst)
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.get_addon_instance(AddonInstanceId=inst)
        self.assertNotIn(inst, [i["AddonInstanceId"] for i in
                                support.list_all(self.mm, "list_addon_instances", "AddonInstances")])
        self.mm.delete_addon_subscription(AddonSubscriptionId=sub)
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.get_addon_subscription(AddonSubscriptionId=sub)
        self.assertNotIn(sub, [s["AddonSubscriptionId"] for s in
                               support.list_all(self.mm, "list_addon_subscriptions", "AddonSubscriptions")])

    def test_every_aws_addon_gets_an_instance(self):
        for name in AWS_ADDONS:
            with self.subTest(addon=name):
                sub = self.subscribe(name)
                inst = self.instantiate(sub)
                self.assertEqual(self.mm.get_addon_instance(AddonInstanceId=inst)["AddonName"], name)
                self.mm.delete_addon_instance(AddonInstanceId=inst)
                self.mm.delete_addon_subscription(AddonSubscriptionId=sub)

    def test_postern_addons_subscribe(self):
        for name in POSTERN_ADDONS:
            with self.subTest(addon=name):
                sub = self.subscribe(name)
                self.assertEqual(self.mm.get_addon_subscription(AddonSubscriptionId=sub)["AddonName"], name)
                self.mm.delete_addon_subscription(AddonSubscriptionId=sub)

    def test_instance_used_by_a_rule(self):
        sub = self.subscribe("ABUSIX_MAIL_INTELLIGENCE")
        inst = self.instantiate(sub)
        arn = self.mm.get_addon_instance(AddonInstanceId=inst)["AddonInstanceArn"]
        # A traffic policy may read a DNS block list at RCPT.
        statements = [{"Action": "DENY", "Conditions": [{"BooleanExpression": {
            "Evaluate": {"Analysis": {"Analyzer": arn, "ResultField": "addon.listed"}}, "Operator": "IS_TRUE"}}]}]
        tp = support.make_traffic_policy(self.mm, self.name("tp-addon"), PolicyStatements=statements)
        self.assertEqual(self.mm.get_traffic_policy(TrafficPolicyId=tp)["PolicyStatements"], statements)
        with self.assertApiError("ConflictException"):
            self.mm.delete_addon_instance(AddonInstanceId=inst)
        self.mm.delete_traffic_policy(TrafficPolicyId=tp)
        self.mm.delete_addon_instance(AddonInstanceId=inst)

    def test_validation_and_unknown(self):
        # Should an unknown add-on be subscribed to, leave no trace of it for
        # the next test.
        self.addCleanup(self._unsubscribe_all, "NOT_AN_ADDON")
        cases = [
            ("AddonName", "create_addon_subscription", {"AddonName": "NOT_AN_ADDON"}),
            ("AddonName", "create_addon_subscription", {}),
            ("AddonSubscriptionId", "create_addon_instance", {"AddonSubscriptionId": "sub-1"}),
            ("AddonSubscriptionId", "get_addon_subscription", {"AddonSubscriptionId": "as_1"}),
            ("AddonInstanceId", "get_addon_instance", {"AddonInstanceId": "instance"}),
            ("PageSize", "list_addon_instances", {"PageSize": 51}),
        ]
        for field, method, params in cases:
            with self.subTest(field=field, method=method, params=params):
                with self.assertApiError("ValidationException", field):
                    getattr(self.raw, method)(**params)
        self.assertNotIn("NOT_AN_ADDON", [s["AddonName"] for s in
                                          support.list_all(self.mm, "list_addon_subscriptions", "AddonSubscriptions")])
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.get_addon_subscription(AddonSubscriptionId=support.missing_id("as-"))
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.get_addon_instance(AddonInstanceId=support.missing_id("ai-"))
        with self.assertApiError("ResourceNotFoundException"):
            self.mm.create_addon_instance(AddonSubscriptionId=support.missing_id("as-"))

    def test_client_tokens(self):
        token = uuid.uuid4().hex
        sub = self.mm.create_addon_subscription(ClientToken=token, AddonName="SPAMHAUS_DBL")["AddonSubscriptionId"]
        self.addCleanup(self._forget, self.mm.delete_addon_subscription, AddonSubscriptionId=sub)
        again = self.mm.create_addon_subscription(ClientToken=token, AddonName="SPAMHAUS_DBL")
        self.assertEqual(again["AddonSubscriptionId"], sub)
        with self.assertApiError("ConflictException"):
            self.mm.create_addon_subscription(ClientToken=token, AddonName="POSTERN_CLAMAV")
        self.assertNotIn("POSTERN_CLAMAV", [s["AddonName"] for s in
                                            support.list_all(self.mm, "list_addon_subscriptions",
                                                             "AddonSubscriptions")])

        other = self.subscribe("ABUSIX_MAIL_INTELLIGENCE")
        token = uuid.uuid4().hex
        inst = self.mm.create_addon_instance(ClientToken=token, AddonSubscriptionId=sub)["AddonInstanceId"]
        self.addCleanup(self._forget, self.mm.delete_addon_instance, AddonInstanceId=inst)
        again = self.mm.create_addon_instance(ClientToken=token, AddonSubscriptionId=sub)
        self.assertEqual(again["AddonInstanceId"], inst)
        with self.assertApiError("ConflictException"):
            self.mm.create_addon_instance(ClientToken=token, AddonSubscriptionId=other)
        self.assertNotIn(other, [i["AddonSubscriptionId"] for i in
                                 support.list_all(self.mm, "list_addon_instances", "AddonInstances")])

    def test_pagination(self):
        subs = [self.subscribe(n) for n in ("SPAMHAUS_DBL", "ABUSIX_MAIL_INTELLIGENCE", "POSTERN_RSPAMD")]
        self.assertPaged("list_addon_subscriptions", "AddonSubscriptions", "AddonSubscriptionId", subs, 2)
        # The two add-ons whose instances need no settings beyond the API's.
        instances = [self.instantiate(s) for s in subs[:2]]
        self.assertPaged("list_addon_instances", "AddonInstances", "AddonInstanceId", instances, 1)


class AddonsOverJson(AddonTests, support.JsonCase):
    pass


class AddonsOverCbor(AddonTests, support.CborCase):
    pass
