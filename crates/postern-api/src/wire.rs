//! The two protocols of the model, driven by its shapes: AWS JSON 1.0
//! (`POST /` with `X-Amz-Target`) and Smithy RPC v2 CBOR
//! (`POST /service/<target prefix>/operation/<name>`).
//!
//! Requests are decoded into JSON values (CBOR's tag 1 timestamps become
//! epoch seconds) and checked against the operation's input shape by the
//! same validator that checks the config file, so every constraint the model
//! states is enforced once. Responses are written by walking the output
//! shape: members the shape does not have are left out, timestamps are epoch
//! seconds (a number in JSON, tag 1 in CBOR), integers stay integers.
//!
//! Errors carry `__type` (the shape id for the model's errors, the bare name
//! for AWS's common ones) and the message under the member the error shape
//! names (`Message`); AWS SDKs read either spelling of the member.

use crate::error::{ApiError, ErrorCode};
use ciborium::Value as Cbor;
use postern_config::Quotas;
use postern_model::schema::{Kind, Schema, Shape};
use serde_json::{Map, Number, Value as Json};

/// The namespace of the model's shape ids, as `__type` spells them.
const NAMESPACE: &str = "com.amazonaws.mailmanager";

/// `Content-Type` of the JSON protocol (`application/x-amz-json-1.0`).
pub const JSON_CONTENT_TYPE: &str = "application/x-amz-json-1.0";
/// `Content-Type` of the RPC v2 CBOR protocol.
pub const CBOR_CONTENT_TYPE: &str = "application/cbor";
/// The header RPC v2 CBOR requests and responses carry, and its value.
pub const SMITHY_PROTOCOL_HEADER: &str = "smithy-protocol";
pub const SMITHY_PROTOCOL: &str = "rpc-v2-cbor";

/// How deeply CBOR may nest; the model's deepest input is far shallower.
const CBOR_RECURSION_LIMIT: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `awsJson1_0`: a JSON body, the operation in `X-Amz-Target`.
    AwsJson10,
    /// `smithy-rpc-v2-cbor`: a CBOR body, the operation in the path.
    RpcV2Cbor,
}

impl Protocol {
    pub fn content_type(self) -> &'static str {
        match self {
            Protocol::AwsJson10 => JSON_CONTENT_TYPE,
            Protocol::RpcV2Cbor => CBOR_CONTENT_TYPE,
        }
    }

    /// The headers of every response in this protocol, successful or not.
    pub fn response_headers(self) -> Vec<(&'static str, String)> {
        let mut headers = vec![("content-type", self.content_type().to_string())];
        if self == Protocol::RpcV2Cbor {
            headers.push((SMITHY_PROTOCOL_HEADER, SMITHY_PROTOCOL.to_string()));
        }
        headers
    }
}

/// Decodes a request body and checks it against the operation's input shape
/// with the model's limits. See [`decode_request_with_quotas`].
pub fn decode_request(protocol: Protocol, operation: &str, body: &[u8]) -> Result<Json, ApiError> {
    decode_request_with_quotas(protocol, operation, body, &Quotas::default())
}

/// Decodes a request body and checks it against the operation's input shape,
/// with the quotas in force for the list sizes they govern.
///
/// An empty body is an empty input. A body that is not JSON (or CBOR), or
/// not an object (map), is a `SerializationException`; a value that breaks
/// the model's constraints is a `ValidationException` naming every field at
/// fault. The result is what the operation receives: members as the model
/// names them, nulls left out, timestamps as epoch seconds.
pub fn decode_request_with_quotas(
    protocol: Protocol,
    operation: &str,
    body: &[u8],
    quotas: &Quotas,
) -> Result<Json, ApiError> {
    let op = Schema::get()
        .operation(operation)
        .ok_or_else(|| unknown_operation(operation))?;
    let value = if body.is_empty() {
        Json::Object(Map::new())
    } else {
        match protocol {
            Protocol::AwsJson10 => parse_json(body)?,
            Protocol::RpcV2Cbor => parse_cbor(body)?,
        }
    };
    if !value.is_object() {
        return Err(ApiError::new(
            ErrorCode::SerializationException,
            format!(
                "The request body must be {} holding the members of {}; found {}",
                match protocol {
                    Protocol::AwsJson10 => "a JSON object",
                    Protocol::RpcV2Cbor => "a CBOR map",
                },
                op.input,
                json_kind(&value)
            ),
        ));
    }
    postern_config::check_value_with_quotas(&value, &op.input, quotas).map_err(|problems| {
        // A list over a quota (rules per rule set, ...) is a quota,
        // not a malformed request, when it is the only problem.
        let over_quota = problems
            .iter()
            .all(|(_, message)| message.contains("raise it with Server.Quotas"));
        let message = validation_message(&problems);
        if over_quota {
            ApiError::quota(message)
        } else {
            ApiError::validation(message)
        }
    })
}

pub(crate) fn unknown_operation(operation: &str) -> ApiError {
    ApiError::new(
        ErrorCode::UnknownOperationException,
        format!("Mail Manager has no operation {operation:?}"),
    )
}

/// One problem: `Path: what is wrong`. Several: a count, then one a line.
fn validation_message(problems: &[postern_config::Problem]) -> String {
    let line = |(path, message): &postern_config::Problem| {
        if path.is_empty() {
            message.clone()
        } else {
            format!("{path}: {message}")
        }
    };
    match problems {
        [one] => line(one),
        _ => {
            let mut out = format!("{} validation errors:", problems.len());
            for problem in problems {
                out.push('\n');
                out.push_str(&line(problem));
            }
            out
        }
    }
}

fn json_kind(value: &Json) -> &'static str {
    match value {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

fn serialization(message: String) -> ApiError {
    ApiError::new(ErrorCode::SerializationException, message)
}

fn parse_json(body: &[u8]) -> Result<Json, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| serialization(format!("The request body is not valid JSON: {e}")))
}

fn parse_cbor(body: &[u8]) -> Result<Json, ApiError> {
    let mut rest = body;
    let value: Cbor =
        ciborium::de::from_reader_with_recursion_limit(&mut rest, CBOR_RECURSION_LIMIT)
            .map_err(|e| serialization(cbor_error(e)))?;
    if !rest.is_empty() {
        return Err(serialization(format!(
            "The request body is not valid CBOR: {} bytes follow the data item at byte {}",
            rest.len(),
            body.len() - rest.len()
        )));
    }
    let mut path = String::new();
    cbor_to_json(value, &mut path)
        .map_err(|e| serialization(format!("The request body cannot be read: {e}")))
}

fn cbor_error<E>(error: ciborium::de::Error<E>) -> String {
    let problem = match error {
        ciborium::de::Error::Io(_) => "it ends inside a data item".to_string(),
        ciborium::de::Error::Syntax(at) => format!("malformed data item at byte {at}"),
        ciborium::de::Error::Semantic(Some(at), what) => format!("{what} at byte {at}"),
        ciborium::de::Error::Semantic(None, what) => what,
        ciborium::de::Error::RecursionLimitExceeded => {
            format!("nested deeper than {CBOR_RECURSION_LIMIT} levels")
        }
    };
    format!("The request body is not valid CBOR: {problem}")
}

/// A CBOR data item as the JSON value the validator reads. Maps need text
/// keys, each once; tag 1 (epoch seconds) is the only tag; byte strings and
/// non-finite floats have no place in the model's shapes.
fn cbor_to_json(value: Cbor, path: &mut String) -> Result<Json, String> {
    let at = |path: &str| {
        if path.is_empty() {
            String::new()
        } else {
            format!("{path}: ")
        }
    };
    Ok(match value {
        Cbor::Null => Json::Null,
        Cbor::Bool(b) => Json::Bool(b),
        Cbor::Text(text) => Json::String(text),
        Cbor::Integer(i) => {
            let i = i128::from(i);
            if let Ok(i) = i64::try_from(i) {
                Json::from(i)
            } else if let Ok(u) = u64::try_from(i) {
                Json::from(u)
            } else {
                return Err(format!("{}the integer {i} is out of range", at(path)));
            }
        }
        Cbor::Float(f) => Json::Number(
            Number::from_f64(f).ok_or_else(|| format!("{}{f} is not a finite number", at(path)))?,
        ),
        Cbor::Tag(1, inner) => match *inner {
            Cbor::Integer(i) => {
                let i = i128::from(i);
                // Beyond ±2^53 seconds is not a date; f64 keeps every date exactly.
                Json::Number(
                    Number::from_f64(i as f64)
                        .ok_or_else(|| format!("{}timestamp out of range", at(path)))?,
                )
            }
            Cbor::Float(f) => Json::Number(
                Number::from_f64(f)
                    .ok_or_else(|| format!("{}the timestamp {f} is not finite", at(path)))?,
            ),
            _ => {
                return Err(format!(
                    "{}a timestamp (tag 1) must hold a number of epoch seconds",
                    at(path)
                ));
            }
        },
        Cbor::Tag(tag, _) => {
            return Err(format!(
                "{}CBOR tag {tag} is not part of the protocol (only tag 1, epoch seconds)",
                at(path)
            ));
        }
        Cbor::Bytes(_) => {
            return Err(format!(
                "{}a byte string where the model has none",
                at(path)
            ));
        }
        Cbor::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                let mark = path.len();
                path.push_str(&format!("[{i}]"));
                out.push(cbor_to_json(item, path)?);
                path.truncate(mark);
            }
            Json::Array(out)
        }
        Cbor::Map(entries) => {
            let mut out = Map::new();
            for (key, value) in entries {
                let Cbor::Text(key) = key else {
                    return Err(format!(
                        "{}map keys must be text strings; found {}",
                        at(path),
                        cbor_kind(&key)
                    ));
                };
                if out.contains_key(&key) {
                    return Err(format!("{}the key {key:?} is given twice", at(path)));
                }
                let mark = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(&key);
                let value = cbor_to_json(value, path)?;
                path.truncate(mark);
                out.insert(key, value);
            }
            Json::Object(out)
        }
        // `Value` is non-exhaustive: a kind of item added later is not ours.
        other => {
            return Err(format!(
                "{}unsupported CBOR item {}",
                at(path),
                cbor_kind(&other)
            ));
        }
    })
}

fn cbor_kind(value: &Cbor) -> &'static str {
    match value {
        Cbor::Integer(_) => "an integer",
        Cbor::Bytes(_) => "a byte string",
        Cbor::Float(_) => "a float",
        Cbor::Text(_) => "a text string",
        Cbor::Bool(_) => "a boolean",
        Cbor::Null => "null",
        Cbor::Tag(..) => "a tagged item",
        Cbor::Array(_) => "an array",
        Cbor::Map(_) => "a map",
        _ => "an unknown item",
    }
}

/// Encodes an operation's output. Members the output shape does not have,
/// and nulls, are left out; timestamps (epoch seconds or RFC 3339 text) are
/// written as the protocol writes them.
///
/// Panics if `operation` is not an operation of the model: outputs come
/// from operations that were decoded first.
pub fn encode_response(protocol: Protocol, operation: &str, output: &Json) -> Vec<u8> {
    let schema = Schema::get();
    let op = schema
        .operation(operation)
        .unwrap_or_else(|| panic!("{operation} is not an operation of the model"));
    let shape = schema.shape(&op.output);
    let typed = typed(output, Some(shape), &mut op.output.clone()).unwrap_or(Cbor::Map(Vec::new()));
    // Even an output without members is an object (map): SDKs parse the
    // body as one.
    let typed = match typed {
        map @ Cbor::Map(_) => map,
        _ => Cbor::Map(Vec::new()),
    };
    write(protocol, &typed)
}

/// Encodes an error: its HTTP status, headers and body.
pub fn encode_error(
    protocol: Protocol,
    error: &ApiError,
) -> (u16, Vec<(&'static str, String)>, Vec<u8>) {
    let name = error.code.name();
    let (type_id, message_member) = if error.code.in_model() {
        // The error shape names its message member (`Message`).
        let member = Schema::get()
            .try_shape(name)
            .and_then(|s| s.members.first())
            .map(|m| m.name.clone())
            .unwrap_or_else(|| "message".to_string());
        (format!("{NAMESPACE}#{name}"), member)
    } else {
        (name.to_string(), "message".to_string())
    };
    let body = Cbor::Map(vec![
        (Cbor::Text("__type".into()), Cbor::Text(type_id)),
        (
            Cbor::Text(message_member),
            Cbor::Text(error.message.clone()),
        ),
    ]);
    let mut headers = protocol.response_headers();
    if protocol == Protocol::AwsJson10 {
        headers.push(("x-amzn-errortype", name.to_string()));
    }
    (error.code.status(), headers, write(protocol, &body))
}

fn write(protocol: Protocol, value: &Cbor) -> Vec<u8> {
    match protocol {
        Protocol::AwsJson10 => {
            serde_json::to_vec(&cbor_as_json(value)).expect("a JSON value serializes")
        }
        Protocol::RpcV2Cbor => {
            let mut out = Vec::new();
            ciborium::ser::into_writer(value, &mut out).expect("writing to a Vec cannot fail");
            out
        }
    }
}

/// The typed output rendered as JSON: tag 1 timestamps become their epoch
/// seconds.
fn cbor_as_json(value: &Cbor) -> Json {
    match value {
        Cbor::Null => Json::Null,
        Cbor::Bool(b) => Json::Bool(*b),
        Cbor::Text(t) => Json::String(t.clone()),
        Cbor::Integer(i) => {
            let i = i128::from(*i);
            i64::try_from(i)
                .map(Json::from)
                .or_else(|_| u64::try_from(i).map(Json::from))
                .unwrap_or_else(|_| number(i as f64))
        }
        Cbor::Float(f) => number(*f),
        Cbor::Tag(_, inner) => cbor_as_json(inner),
        Cbor::Bytes(b) => Json::Array(b.iter().map(|b| Json::from(*b)).collect()),
        Cbor::Array(items) => Json::Array(items.iter().map(cbor_as_json).collect()),
        Cbor::Map(entries) => Json::Object(
            entries
                .iter()
                .map(|(k, v)| {
                    let key = match k {
                        Cbor::Text(t) => t.clone(),
                        other => cbor_as_json(other).to_string(),
                    };
                    (key, cbor_as_json(v))
                })
                .collect(),
        ),
        _ => Json::Null,
    }
}

fn number(f: f64) -> Json {
    Number::from_f64(f).map(Json::Number).unwrap_or(Json::Null)
}

/// An output value typed by its shape; `None` for a null (an absent member).
/// A value of another type than its shape says is written as it is: the
/// operations build their outputs from the model's types, so this does not
/// happen, and dropping data silently would hide it if it did.
fn typed(value: &Json, shape: Option<&Shape>, path: &mut String) -> Option<Cbor> {
    let schema = Schema::get();
    if value.is_null() {
        return None;
    }
    let Some(shape) = shape else {
        return Some(untyped(value));
    };
    Some(match (shape.kind, value) {
        (Kind::Structure | Kind::Union, Json::Object(members)) => {
            let mut out = Vec::with_capacity(members.len());
            for (name, member_value) in members {
                let Some(member) = shape.member(name) else {
                    tracing::warn!(
                        member = %name,
                        at = %path,
                        shape = %shape.name,
                        "output member not in the model left out"
                    );
                    continue;
                };
                let mark = path.len();
                path.push('.');
                path.push_str(name);
                let member_shape = schema.try_shape(&member.shape);
                if let Some(v) = typed(member_value, member_shape, path) {
                    out.push((Cbor::Text(name.clone()), v));
                }
                path.truncate(mark);
            }
            Cbor::Map(out)
        }
        (Kind::List, Json::Array(items)) => {
            let element = shape.element.as_deref().and_then(|e| schema.try_shape(e));
            Cbor::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| {
                        let mark = path.len();
                        path.push_str(&format!("[{i}]"));
                        let v = typed(item, element, path).unwrap_or(Cbor::Null);
                        path.truncate(mark);
                        v
                    })
                    .collect(),
            )
        }
        (Kind::Map, Json::Object(entries)) => {
            let element = shape.element.as_deref().and_then(|e| schema.try_shape(e));
            Cbor::Map(
                entries
                    .iter()
                    .filter_map(|(k, v)| {
                        let mark = path.len();
                        path.push_str(&format!("[{k:?}]"));
                        let v = typed(v, element, path);
                        path.truncate(mark);
                        Some((Cbor::Text(k.clone()), v?))
                    })
                    .collect(),
            )
        }
        (Kind::Integer | Kind::Long, Json::Number(n)) => match (n.as_i64(), n.as_u64(), n.as_f64())
        {
            (Some(i), _, _) => Cbor::Integer(i.into()),
            (None, Some(u), _) => Cbor::Integer(u.into()),
            (None, None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.2e18 => {
                Cbor::Integer((f as i64).into())
            }
            _ => untyped(value),
        },
        (Kind::Double, Json::Number(n)) => Cbor::Float(n.as_f64().unwrap_or_default()),
        (Kind::Timestamp, Json::Number(n)) => timestamp(n.as_f64().unwrap_or_default()),
        (Kind::Timestamp, Json::String(text)) => match postern_model::Timestamp::parse(text) {
            Some(t) => timestamp(t.0),
            None => untyped(value),
        },
        _ => untyped(value),
    })
}

/// Tag 1 over whole seconds as an integer (as AWS SDKs write them), over
/// fractional ones as a float.
fn timestamp(seconds: f64) -> Cbor {
    let inner = if seconds.fract() == 0.0 && seconds.abs() < 9.0e15 {
        Cbor::Integer((seconds as i64).into())
    } else {
        Cbor::Float(seconds)
    };
    Cbor::Tag(1, Box::new(inner))
}

/// A value with no shape to guide it (the postern extensions' `oneOf`).
fn untyped(value: &Json) -> Cbor {
    match value {
        Json::Null => Cbor::Null,
        Json::Bool(b) => Cbor::Bool(*b),
        Json::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => Cbor::Integer(i.into()),
            (None, Some(u)) => Cbor::Integer(u.into()),
            _ => Cbor::Float(n.as_f64().unwrap_or_default()),
        },
        Json::String(s) => Cbor::Text(s.clone()),
        Json::Array(items) => Cbor::Array(items.iter().map(untyped).collect()),
        Json::Object(members) => Cbor::Map(
            members
                .iter()
                .filter(|(_, v)| !v.is_null())
                .map(|(k, v)| (Cbor::Text(k.clone()), untyped(v)))
                .collect(),
        ),
    }
}
