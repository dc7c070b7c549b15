//! What the tests share: requests botocore signed (captured from botocore
//! 1.43.11 with its clock fixed at 2024-05-01T10:00:00Z), and a SigV4 signer
//! for fresh requests, itself checked against those captures.

#![allow(dead_code)]

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use ring::hmac;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

pub const ACCESS_KEY_ID: &str = "AKIDEXAMPLE";
pub const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
/// When botocore signed the captured requests.
pub const SIGNED_AT: i64 = 1714557600;

/// A request as botocore sent it.
pub struct Captured {
    pub path: &'static str,
    pub host: &'static str,
    pub headers: &'static [(&'static str, &'static str)],
    pub body_hex: &'static str,
}

impl Captured {
    pub fn header_map(&self) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert("host", HeaderValue::from_static(self.host));
        for (name, value) in self.headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_static(value),
            );
        }
        map
    }

    pub fn body(&self) -> Vec<u8> {
        hex::decode(self.body_hex).unwrap()
    }
}

/// `client.create_rule_set(...)` over AWS JSON 1.0, region eu-west-1.
pub const JSON_CREATE_RULE_SET: Captured = Captured {
    path: "/",
    host: "localhost:8025",
    headers: &[
        ("X-Amz-Target", "MailManagerSvc.CreateRuleSet"),
        ("Content-Type", "application/x-amz-json-1.0"),
        (
            "User-Agent",
            "Botocore/1.43.11 ua/2.1 os/linux md/arch#x86_64 lang/python#3.11.7",
        ),
        ("X-Amz-Date", "20240501T100000Z"),
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/eu-west-1/ses/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
             Signature=e947ccfb97f227772c3ac1a5e279550e29c885d07b524f8fa4123773116a6fbc",
        ),
        (
            "amz-sdk-invocation-id",
            "a1919835-866d-4123-ab49-e90448f83a25",
        ),
        ("amz-sdk-request", "attempt=1"),
        ("Content-Length", "237"),
    ],
    body_hex: "7b22436c69656e74546f6b656e223a2022746f6b656e2d31222c202252756c655365744e616d65223a2022696e626f756e64222c202252756c6573223a205b7b224e616d65223a202264726f702d7370616d222c2022436f6e646974696f6e73223a205b7b22537472696e6745787072657373696f6e223a207b224576616c75617465223a207b22417474726962757465223a20225355424a454354227d2c20224f70657261746f72223a2022434f4e5441494e53222c202256616c756573223a205b225b5350414d5d225d7d7d5d2c2022416374696f6e73223a205b7b2244726f70223a207b7d7d5d7d5d7d",
};

/// The same call over RPC v2 CBOR.
pub const CBOR_CREATE_RULE_SET: Captured = Captured {
    path: "/service/MailManagerSvc/operation/CreateRuleSet",
    host: "localhost:8025",
    headers: &[
        ("smithy-protocol", "rpc-v2-cbor"),
        ("Accept", "application/cbor"),
        ("Content-Type", "application/cbor"),
        (
            "User-Agent",
            "Botocore/1.43.11 ua/2.1 os/linux md/arch#x86_64 lang/python#3.11.7",
        ),
        ("X-Amz-Date", "20240501T100000Z"),
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/eu-west-1/ses/aws4_request, \
             SignedHeaders=accept;content-type;host;smithy-protocol;x-amz-date, \
             Signature=5e608b33311241adabd187841bb5ef3da4169a5dfcb16f4d568fc355d3ccf38e",
        ),
        (
            "amz-sdk-invocation-id",
            "6a7d1423-4b37-43cc-afec-53a39c220427",
        ),
        ("amz-sdk-request", "attempt=1"),
        ("Content-Length", "172"),
    ],
    body_hex: "a36b436c69656e74546f6b656e67746f6b656e2d316b52756c655365744e616d6567696e626f756e646552756c657381a3644e616d656964726f702d7370616d6a436f6e646974696f6e7381a170537472696e6745787072657373696f6ea3684576616c75617465a169417474726962757465675355424a454354684f70657261746f7268434f4e5441494e536656616c75657381665b5350414d5d67416374696f6e7381a16444726f70a0",
};

/// `client.start_archive_search(...)` (timestamps 2024-01-01T00:00:00Z and
/// 2024-02-01T12:30:00Z) over AWS JSON 1.0, region us-east-1.
pub const JSON_START_ARCHIVE_SEARCH: Captured = Captured {
    path: "/",
    host: "127.0.0.1:8025",
    headers: &[
        ("X-Amz-Target", "MailManagerSvc.StartArchiveSearch"),
        ("Content-Type", "application/x-amz-json-1.0"),
        ("X-Amz-Date", "20240501T100000Z"),
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/us-east-1/ses/aws4_request, \
             SignedHeaders=content-type;host;x-amz-date;x-amz-target, \
             Signature=7cc416b364992c87a283adb433e37860ae61f0010bfe4468a6f3d20bf458d3af",
        ),
        ("Content-Length", "102"),
    ],
    body_hex: "7b22417263686976654964223a2022612d6172636869766531222c202246726f6d54696d657374616d70223a20313730343036373230302c2022546f54696d657374616d70223a20313730363739303630302c20224d6178526573756c7473223a203130307d",
};

/// The same call over RPC v2 CBOR: the timestamps are tag 1 over integers.
pub const CBOR_START_ARCHIVE_SEARCH: Captured = Captured {
    path: "/service/MailManagerSvc/operation/StartArchiveSearch",
    host: "127.0.0.1:8025",
    headers: &[
        ("smithy-protocol", "rpc-v2-cbor"),
        ("Accept", "application/cbor"),
        ("Content-Type", "application/cbor"),
        ("X-Amz-Date", "20240501T100000Z"),
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20240501/us-east-1/ses/aws4_request, \
             SignedHeaders=accept;content-type;host;smithy-protocol;x-amz-date, \
             Signature=d13494c812722be4b7c5af825ad5329abfd63272cb5c2e0c9a39445ceca9ce29",
        ),
        ("Content-Length", "73"),
    ],
    body_hex: "a4694172636869766549646a612d61726368697665316d46726f6d54696d657374616d70c11a659200806b546f54696d657374616d70c11a65bb8ec86a4d6178526573756c74731864",
};

pub const ALL_CAPTURED: [&Captured; 4] = [
    &JSON_CREATE_RULE_SET,
    &CBOR_CREATE_RULE_SET,
    &JSON_START_ARCHIVE_SEARCH,
    &CBOR_START_ARCHIVE_SEARCH,
];

/// Signs a request the way botocore does: every header present is signed
/// (`host` must be among them), `X-Amz-Date` is added unless a `Date` header
/// gives the time, and `Authorization` is set. The path has no query and needs no encoding.
pub fn sign(
    method: &str,
    path: &str,
    headers: &mut HeaderMap,
    body: &[u8],
    secret: &str,
    region: &str,
    at: OffsetDateTime,
) {
    let at = at.to_offset(time::UtcOffset::UTC);
    let amz_date = format!(
        "{:04}{:02}{:02}T{:02}{:02}{:02}Z",
        at.year(),
        at.month() as u8,
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    );
    let day = &amz_date[..8];
    if !headers.contains_key("date") {
        headers.insert("x-amz-date", HeaderValue::from_str(&amz_date).unwrap());
    }
    headers.remove("authorization");
    let mut names: Vec<String> = headers.keys().map(|k| k.as_str().to_string()).collect();
    names.sort();
    names.dedup();
    let canonical_headers: String = names
        .iter()
        .map(|name| {
            let values: Vec<String> = headers
                .get_all(name.as_str())
                .iter()
                .map(|v| {
                    v.to_str()
                        .unwrap()
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect();
            format!("{name}:{}\n", values.join(","))
        })
        .collect();
    let signed_headers = names.join(";");
    let canonical = format!(
        "{method}\n{path}\n\n{canonical_headers}\n{signed_headers}\n{}",
        hex::encode(Sha256::digest(body))
    );
    let scope = format!("{day}/{region}/ses/aws4_request");
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    );
    let mac = |key: &[u8], data: &str| {
        hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data.as_bytes())
            .as_ref()
            .to_vec()
    };
    let mut key = mac(format!("AWS4{secret}").as_bytes(), day);
    for part in [region, "ses", "aws4_request"] {
        key = mac(&key, part);
    }
    let signature = hex::encode(mac(&key, &string_to_sign));
    headers.insert(
        "authorization",
        HeaderValue::from_str(&format!(
            "AWS4-HMAC-SHA256 Credential={ACCESS_KEY_ID}/{scope}, \
             SignedHeaders={signed_headers}, Signature={signature}"
        ))
        .unwrap(),
    );
}
