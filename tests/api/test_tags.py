"""Tags on every taggable resource: Tags given at create, TagResource,
UntagResource, ListTagsForResource."""

from botocore.exceptions import ClientError

import support

AT_CREATE = {"team": "mail-platform", "cost-center": "cc:1234/x_y+z=@."}


class TagTests:
    def _forget(self, delete, **params):
        try:
            delete(**params)
        except ClientError as e:
            if e.response["Error"]["Code"] != "ResourceNotFoundException":
                raise

    def make(self, kind, tags):
        """Creates a resource of `kind` with `tags`; returns (its ARN, a
        function that deletes it)."""
        mm, name, t = self.mm, self.name(f"tag-{kind[:6]}"), support.tag_list(tags)
        if kind == "traffic-policy":
            i = support.make_traffic_policy(mm, name, Tags=t)
            return mm.get_traffic_policy(TrafficPolicyId=i)["TrafficPolicyArn"], \
                lambda: mm.delete_traffic_policy(TrafficPolicyId=i)
        if kind == "rule-set":
            i = support.make_rule_set(mm, name, Tags=t)
            return mm.get_rule_set(RuleSetId=i)["RuleSetArn"], lambda: mm.delete_rule_set(RuleSetId=i)
        if kind == "ingress-point":
            i = support.make_ingress_point(mm, name, Tags=t)
            return mm.get_ingress_point(IngressPointId=i)["IngressPointArn"], \
                lambda: mm.delete_ingress_point(IngressPointId=i)
        if kind == "address-list":
            i = support.make_address_list(mm, name, Tags=t)
            return mm.get_address_list(AddressListId=i)["AddressListArn"], \
                lambda: mm.delete_address_list(AddressListId=i)
        if kind == "archive":
            i = support.make_archive(mm, name, Tags=t)
            return mm.get_archive(ArchiveId=i)["ArchiveArn"], None
        if kind == "relay":
            i = support.make_relay(mm, name, Tags=t)
            return mm.get_relay(RelayId=i)["RelayArn"], lambda: mm.delete_relay(RelayId=i)
        if kind == "addon-subscription":
            i = mm.create_addon_subscription(AddonName="POSTERN_RSPAMD", Tags=t)["AddonSubscriptionId"]
            self.addCleanup(self._forget, mm.delete_addon_subscription, AddonSubscriptionId=i)
            return mm.get_addon_subscription(AddonSubscriptionId=i)["AddonSubscriptionArn"], \
                lambda: mm.delete_addon_subscription(AddonSubscriptionId=i)
        if kind == "addon-instance":
            s = mm.create_addon_subscription(AddonName="SPAMHAUS_DBL")["AddonSubscriptionId"]
            self.addCleanup(self._forget, mm.delete_addon_subscription, AddonSubscriptionId=s)
            i = mm.create_addon_instance(AddonSubscriptionId=s, Tags=t)["AddonInstanceId"]
            self.addCleanup(self._forget, mm.delete_addon_instance, AddonInstanceId=i)
            return mm.get_addon_instance(AddonInstanceId=i)["AddonInstanceArn"], \
                lambda: mm.delete_addon_instance(AddonInstanceId=i)
        raise ValueError(kind)

    def tags(self, arn):
        response = self.mm.list_tags_for_resource(ResourceArn=arn)
        self.assertIn("Tags", response)
        keys = [t["Key"] for t in response["Tags"]]
        self.assertEqual(len(keys), len(set(keys)), f"a key shows up once: {keys}")
        return support.tag_dict(response["Tags"])

    def test_every_kind(self):
        for kind in ("traffic-policy", "rule-set", "ingress-point", "address-list", "archive", "relay",
                     "addon-subscription", "addon-instance"):
            with self.subTest(kind=kind):
                arn, delete = self.make(kind, AT_CREATE)
                self.assertEqual(self.tags(arn), AT_CREATE)

                self.mm.tag_resource(ResourceArn=arn, Tags=support.tag_list({"env": "prod", "team": "security",
                                                                             "empty": ""}))
                self.assertEqual(self.tags(arn), dict(AT_CREATE, env="prod", team="security", empty=""))

                self.mm.untag_resource(ResourceArn=arn, TagKeys=["team", "empty", "never-set"])
                self.assertEqual(self.tags(arn), {"cost-center": AT_CREATE["cost-center"], "env": "prod"})

                self.mm.untag_resource(ResourceArn=arn, TagKeys=["cost-center", "env"])
                self.assertEqual(self.tags(arn), {})

                if delete is not None:
                    delete()
                    with self.assertApiError("ResourceNotFoundException"):
                        self.mm.list_tags_for_resource(ResourceArn=arn)

    def test_unknown_resource(self):
        for kind, prefix in (("mailmanager-rule-set", "rs-"), ("mailmanager-archive", "a-"),
                             ("addon-instance", "ai-")):
            arn = support.arn(kind, support.missing_id(prefix))
            with self.subTest(arn=arn):
                with self.assertApiError("ResourceNotFoundException"):
                    self.mm.list_tags_for_resource(ResourceArn=arn)
                with self.assertApiError("ResourceNotFoundException"):
                    self.mm.tag_resource(ResourceArn=arn, Tags=support.tag_list({"a": "b"}))
                with self.assertApiError("ResourceNotFoundException"):
                    self.mm.untag_resource(ResourceArn=arn, TagKeys=["a"])

    def test_validation_names_the_field(self):
        arn, _ = self.make("relay", {})
        cases = [
            ("ResourceArn", "list_tags_for_resource", {"ResourceArn": "arn:aws:s3:::some-bucket-name"}),
            ("ResourceArn", "tag_resource", {"ResourceArn": "not-an-arn-at-all-really",
                                             "Tags": support.tag_list({"a": "b"})}),
            ("Key", "tag_resource", {"ResourceArn": arn, "Tags": [{"Key": "has space", "Value": "v"}]}),
            ("Key", "tag_resource", {"ResourceArn": arn, "Tags": [{"Key": "k" * 129, "Value": "v"}]}),
            ("Value", "tag_resource", {"ResourceArn": arn, "Tags": [{"Key": "k", "Value": "v" * 257}]}),
            ("Value", "tag_resource", {"ResourceArn": arn, "Tags": [{"Key": "k"}]}),
            ("Tags", "tag_resource", {"ResourceArn": arn, "Tags": [{"Key": f"k{i}", "Value": "v"}
                                                                   for i in range(201)]}),
            ("TagKeys", "untag_resource", {"ResourceArn": arn}),
            ("aws:", "tag_resource", {"ResourceArn": arn, "Tags": [{"Key": "aws:reserved", "Value": "v"}]}),
            ("Tags", "create_relay", {"RelayName": self.name("rl-tags"), "ServerName": "smtp.relay.test",
                                      "ServerPort": 25, "Authentication": {"NoAuthentication": {}},
                                      "Tags": [{"Key": f"k{i}", "Value": "v"} for i in range(201)]}),
        ]
        for field, method, params in cases:
            with self.subTest(field=field, method=method):
                with self.assertApiError("ValidationException", field):
                    getattr(self.raw, method)(**params)
        self.assertEqual(self.tags(arn), {}, "refused requests tag nothing")

    def test_quota_of_200_tags(self):
        arn, _ = self.make("address-list", {})
        self.mm.tag_resource(ResourceArn=arn, Tags=[{"Key": f"k{i}", "Value": "v"} for i in range(150)])
        with self.assertApiError("ServiceQuotaExceededException"):
            self.mm.tag_resource(ResourceArn=arn, Tags=[{"Key": f"more{i}", "Value": "v"} for i in range(51)])
        self.assertEqual(len(self.tags(arn)), 150, "a refused request tags nothing")
        # Overwriting existing keys does not count twice.
        self.mm.tag_resource(ResourceArn=arn, Tags=[{"Key": f"k{i}", "Value": "w"} for i in range(150)] +
                             [{"Key": f"more{i}", "Value": "v"} for i in range(50)])
        tags = self.tags(arn)
        self.assertEqual(len(tags), 200)
        self.assertEqual(tags["k0"], "w")


class TagsOverJson(TagTests, support.JsonCase):
    pass


class TagsOverCbor(TagTests, support.CborCase):
    pass
