//! Request bodies in Kubernetes' protobuf encoding.
//!
//! Since client-go 1.32 the typed clients of built-in kinds send `application/vnd.kubernetes.protobuf`
//! bodies, so kubectl 1.33's `create configmap`, `create secret`, `create namespace`,
//! `create deployment`, `create job` and `create cronjob` arrive here.
//! The body is the magic `k8s\0` followed by a `runtime.Unknown` whose `raw` field holds the object
//! encoded by the `generated.proto` of its API group. The object is turned into the JSON the rest
//! of the API server works on, guided by a small field table per kind: the field numbers come from
//! `k8s.io/api` and `k8s.io/apimachinery`. Unknown field numbers are skipped, as protobuf does.
//! Responses stay JSON: these clients always accept `application/json` as well.

use base64::Engine;
use serde_json::{Map, Value};

pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ProtobufError {
    #[error("the protobuf body does not start with the Kubernetes magic prefix")]
    MissingMagic,
    #[error("the protobuf body is truncated or malformed")]
    Malformed,
    #[error("field {field} has wire type {wire}, not the one its type needs")]
    WireType { field: &'static str, wire: u8 },
    #[error("protobuf bodies of {api_version}/{kind} are not supported; send application/json")]
    UnsupportedKind { api_version: String, kind: String },
}

/// How one protobuf field becomes JSON.
#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    /// A pointer int (`*int32`): written when set, so a zero is a value, not an absence.
    PtrInt,
    Bool,
    /// `intstr.IntOrString`: `{type, intVal, strVal}` on the wire, a number or string in JSON.
    IntOrStr,
    /// `metav1.Time`: `{seconds, nanos}` on the wire, RFC 3339 in JSON.
    Time,
    /// `map<string, string>`
    StrMap,
    /// `map<string, bytes>`: JSON carries `[]byte` as base64.
    BytesMap,
    Msg(&'static [Field]),
}

struct Field {
    number: u64,
    name: &'static str,
    kind: Kind,
    repeated: bool,
}

const fn one(number: u64, name: &'static str, kind: Kind) -> Field {
    Field {
        number,
        name,
        kind,
        repeated: false,
    }
}

const fn many(number: u64, name: &'static str, kind: Kind) -> Field {
    Field {
        number,
        name,
        kind,
        repeated: true,
    }
}

const OWNER_REFERENCE: &[Field] = &[
    one(5, "apiVersion", Kind::Str),
    one(1, "kind", Kind::Str),
    one(3, "name", Kind::Str),
    one(4, "uid", Kind::Str),
    one(6, "controller", Kind::Bool),
    one(7, "blockOwnerDeletion", Kind::Bool),
];

/// `managedFields` is left out: the server owns it.
const OBJECT_META: &[Field] = &[
    one(1, "name", Kind::Str),
    one(2, "generateName", Kind::Str),
    one(3, "namespace", Kind::Str),
    one(4, "selfLink", Kind::Str),
    one(5, "uid", Kind::Str),
    one(6, "resourceVersion", Kind::Str),
    one(7, "generation", Kind::Int),
    one(8, "creationTimestamp", Kind::Time),
    one(9, "deletionTimestamp", Kind::Time),
    one(10, "deletionGracePeriodSeconds", Kind::Int),
    one(11, "labels", Kind::StrMap),
    one(12, "annotations", Kind::StrMap),
    many(13, "ownerReferences", Kind::Msg(OWNER_REFERENCE)),
    many(14, "finalizers", Kind::Str),
];

const CONFIG_MAP: &[Field] = &[
    one(1, "metadata", Kind::Msg(OBJECT_META)),
    one(2, "data", Kind::StrMap),
    one(3, "binaryData", Kind::BytesMap),
    one(4, "immutable", Kind::Bool),
];

const SECRET: &[Field] = &[
    one(1, "metadata", Kind::Msg(OBJECT_META)),
    one(2, "data", Kind::BytesMap),
    one(3, "type", Kind::Str),
    one(4, "stringData", Kind::StrMap),
    one(5, "immutable", Kind::Bool),
];

const NAMESPACE_SPEC: &[Field] = &[many(1, "finalizers", Kind::Str)];
const NAMESPACE_STATUS: &[Field] = &[one(1, "phase", Kind::Str)];
const NAMESPACE: &[Field] = &[
    one(1, "metadata", Kind::Msg(OBJECT_META)),
    one(2, "spec", Kind::Msg(NAMESPACE_SPEC)),
    one(3, "status", Kind::Msg(NAMESPACE_STATUS)),
];

const PRECONDITIONS: &[Field] = &[
    one(1, "uid", Kind::Str),
    one(2, "resourceVersion", Kind::Str),
];
const DELETE_OPTIONS: &[Field] = &[
    one(1, "gracePeriodSeconds", Kind::Int),
    one(2, "preconditions", Kind::Msg(PRECONDITIONS)),
    one(3, "orphanDependents", Kind::Bool),
    one(4, "propagationPolicy", Kind::Str),
    many(5, "dryRun", Kind::Str),
];

const LABEL_SELECTOR_REQUIREMENT: &[Field] = &[
    one(1, "key", Kind::Str),
    one(2, "operator", Kind::Str),
    many(3, "values", Kind::Str),
];
const LABEL_SELECTOR: &[Field] = &[
    one(1, "matchLabels", Kind::StrMap),
    many(2, "matchExpressions", Kind::Msg(LABEL_SELECTOR_REQUIREMENT)),
];

/// The container fields `kubectl create deployment` sets; an empty `resources` comes
/// along as Go writes every non-pointer message.
const CONTAINER_PORT: &[Field] = &[
    one(1, "name", Kind::Str),
    one(2, "hostPort", Kind::Int),
    one(3, "containerPort", Kind::Int),
    one(4, "protocol", Kind::Str),
];
const RESOURCE_REQUIREMENTS: &[Field] = &[];
const CONTAINER: &[Field] = &[
    one(1, "name", Kind::Str),
    one(2, "image", Kind::Str),
    many(3, "command", Kind::Str),
    many(4, "args", Kind::Str),
    one(5, "workingDir", Kind::Str),
    many(6, "ports", Kind::Msg(CONTAINER_PORT)),
    one(8, "resources", Kind::Msg(RESOURCE_REQUIREMENTS)),
    one(14, "imagePullPolicy", Kind::Str),
    many(7, "env", Kind::Msg(ENV_VAR)),
];
/// Literal values only: `valueFrom` is not decoded.
const ENV_VAR: &[Field] = &[one(1, "name", Kind::Str), one(2, "value", Kind::Str)];
const POD_SPEC: &[Field] = &[
    many(2, "containers", Kind::Msg(CONTAINER)),
    one(3, "restartPolicy", Kind::Str),
    one(29, "runtimeClassName", Kind::Str),
];
const POD_TEMPLATE_SPEC: &[Field] = &[
    one(1, "metadata", Kind::Msg(OBJECT_META)),
    one(2, "spec", Kind::Msg(POD_SPEC)),
];

const ROLLING_UPDATE_DEPLOYMENT: &[Field] = &[
    one(1, "maxUnavailable", Kind::IntOrStr),
    one(2, "maxSurge", Kind::IntOrStr),
];
const DEPLOYMENT_STRATEGY: &[Field] = &[
    one(1, "type", Kind::Str),
    one(2, "rollingUpdate", Kind::Msg(ROLLING_UPDATE_DEPLOYMENT)),
];
const DEPLOYMENT_SPEC: &[Field] = &[
    one(1, "replicas", Kind::PtrInt),
    one(2, "selector", Kind::Msg(LABEL_SELECTOR)),
    one(3, "template", Kind::Msg(POD_TEMPLATE_SPEC)),
    one(4, "strategy", Kind::Msg(DEPLOYMENT_STRATEGY)),
    one(5, "minReadySeconds", Kind::Int),
    one(6, "revisionHistoryLimit", Kind::PtrInt),
    one(7, "paused", Kind::Bool),
    one(9, "progressDeadlineSeconds", Kind::PtrInt),
];
/// Status is the controller's: a client's is ignored on create.
const DEPLOYMENT: &[Field] = &[
    one(1, "metadata", Kind::Msg(OBJECT_META)),
    one(2, "spec", Kind::Msg(DEPLOYMENT_SPEC)),
];

const JOB_SPEC: &[Field] = &[
    one(1, "parallelism", Kind::PtrInt),
    one(2, "completions", Kind::PtrInt),
    one(3, "activeDeadlineSeconds", Kind::PtrInt),
    one(4, "selector", Kind::Msg(LABEL_SELECTOR)),
    one(5, "manualSelector", Kind::Bool),
    one(6, "template", Kind::Msg(POD_TEMPLATE_SPEC)),
    one(7, "backoffLimit", Kind::PtrInt),
    one(8, "ttlSecondsAfterFinished", Kind::PtrInt),
    one(9, "completionMode", Kind::Str),
    one(10, "suspend", Kind::Bool),
];
const JOB: &[Field] = &[
    one(1, "metadata", Kind::Msg(OBJECT_META)),
    one(2, "spec", Kind::Msg(JOB_SPEC)),
];

const JOB_TEMPLATE_SPEC: &[Field] = &[
    one(1, "metadata", Kind::Msg(OBJECT_META)),
    one(2, "spec", Kind::Msg(JOB_SPEC)),
];
const CRON_JOB_SPEC: &[Field] = &[
    one(1, "schedule", Kind::Str),
    one(2, "startingDeadlineSeconds", Kind::PtrInt),
    one(3, "concurrencyPolicy", Kind::Str),
    one(4, "suspend", Kind::Bool),
    one(5, "jobTemplate", Kind::Msg(JOB_TEMPLATE_SPEC)),
    one(6, "successfulJobsHistoryLimit", Kind::PtrInt),
    one(7, "failedJobsHistoryLimit", Kind::PtrInt),
    one(8, "timeZone", Kind::Str),
];
const CRON_JOB: &[Field] = &[
    one(1, "metadata", Kind::Msg(OBJECT_META)),
    one(2, "spec", Kind::Msg(CRON_JOB_SPEC)),
];

const TYPE_META: &[Field] = &[one(1, "apiVersion", Kind::Str), one(2, "kind", Kind::Str)];

fn schema(api_version: &str, kind: &str) -> Option<&'static [Field]> {
    match (api_version, kind) {
        ("v1", "ConfigMap") => Some(CONFIG_MAP),
        ("v1", "Secret") => Some(SECRET),
        ("v1", "Namespace") => Some(NAMESPACE),
        ("apps/v1", "Deployment") => Some(DEPLOYMENT),
        ("batch/v1", "Job") => Some(JOB),
        ("batch/v1", "CronJob") => Some(CRON_JOB),
        // DeleteOptions is sent with the group version of the resource being deleted.
        (_, "DeleteOptions") => Some(DELETE_OPTIONS),
        _ => None,
    }
}

/// Decodes a protobuf request body into the object's JSON, with `apiVersion` and `kind` set.
pub fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let mut envelope = Reader(
        body.strip_prefix(MAGIC)
            .ok_or(ProtobufError::MissingMagic)?,
    );
    let (mut type_meta, mut raw) = (Value::Null, &[][..]);
    while let Some((number, wire)) = envelope.tag()? {
        match (number, wire) {
            (1, LEN) => type_meta = message(envelope.bytes()?, TYPE_META)?,
            (2, LEN) => raw = envelope.bytes()?,
            _ => envelope.skip(wire)?,
        }
    }
    let api_version = type_meta["apiVersion"].as_str().unwrap_or_default();
    let kind = type_meta["kind"].as_str().unwrap_or_default();
    let fields = schema(api_version, kind).ok_or_else(|| ProtobufError::UnsupportedKind {
        api_version: api_version.into(),
        kind: kind.into(),
    })?;
    let mut object = Map::new();
    object.insert("apiVersion".into(), api_version.into());
    object.insert("kind".into(), kind.into());
    if let Value::Object(fields) = message(raw, fields)? {
        object.extend(fields);
    }
    Ok(Value::Object(object))
}

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

fn message(bytes: &[u8], fields: &[Field]) -> Result<Value, ProtobufError> {
    let mut out = Map::new();
    let mut reader = Reader(bytes);
    while let Some((number, wire)) = reader.tag()? {
        let Some(field) = fields.iter().find(|f| f.number == number) else {
            reader.skip(wire)?;
            continue;
        };
        let value = scalar_or_message(&mut reader, field, wire)?;
        match field.kind {
            Kind::StrMap | Kind::BytesMap => {
                let (key, value) = value;
                let map = out
                    .entry(field.name)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = map {
                    map.insert(key.unwrap_or_default(), value);
                }
            }
            _ if field.repeated => {
                let list = out
                    .entry(field.name)
                    .or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(list) = list {
                    list.push(value.1);
                }
            }
            // Go's generated code writes every non-pointer field, zero or not; its JSON
            // (`omitempty`) leaves zero values out, and so does this.
            _ if is_zero(&value.1) && !matches!(field.kind, Kind::PtrInt) => {}
            _ => {
                out.insert(field.name.into(), value.1);
            }
        }
    }
    Ok(Value::Object(out))
}

fn is_zero(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0),
        Value::Bool(b) => !b,
        _ => false,
    }
}

/// One occurrence of a field; map entries also return their key.
fn scalar_or_message(
    reader: &mut Reader,
    field: &Field,
    wire: u8,
) -> Result<(Option<String>, Value), ProtobufError> {
    let wrong = || ProtobufError::WireType {
        field: field.name,
        wire,
    };
    let expect = |w: u8| if wire == w { Ok(()) } else { Err(wrong()) };
    Ok(match field.kind {
        Kind::Str => {
            expect(LEN)?;
            (None, Value::String(utf8(reader.bytes()?)?))
        }
        Kind::Int | Kind::PtrInt => {
            expect(VARINT)?;
            // int32 fields are sign-extended to 64 bits on the wire.
            (None, Value::from(reader.varint()? as i64))
        }
        Kind::IntOrStr => {
            expect(LEN)?;
            (None, int_or_string(reader.bytes()?)?)
        }
        Kind::Bool => {
            expect(VARINT)?;
            (None, Value::Bool(reader.varint()? != 0))
        }
        Kind::Time => {
            expect(LEN)?;
            (None, time(reader.bytes()?)?)
        }
        Kind::StrMap | Kind::BytesMap => {
            expect(LEN)?;
            map_entry(reader.bytes()?, matches!(field.kind, Kind::BytesMap))?
        }
        Kind::Msg(fields) => {
            expect(LEN)?;
            (None, message(reader.bytes()?, fields)?)
        }
    })
}

/// A map entry is a message with the key in field 1 and the value in field 2.
fn map_entry(bytes: &[u8], bytes_value: bool) -> Result<(Option<String>, Value), ProtobufError> {
    let mut reader = Reader(bytes);
    let mut key = String::new();
    let mut value = if bytes_value {
        base64(&[])
    } else {
        Value::String(String::new())
    };
    while let Some((number, wire)) = reader.tag()? {
        match (number, wire) {
            (1, LEN) => key = utf8(reader.bytes()?)?,
            (2, LEN) if bytes_value => value = base64(reader.bytes()?),
            (2, LEN) => value = Value::String(utf8(reader.bytes()?)?),
            _ => reader.skip(wire)?,
        }
    }
    Ok((Some(key), value))
}

/// `intstr.IntOrString`: type 0 is `intVal`, type 1 `strVal`.
fn int_or_string(bytes: &[u8]) -> Result<Value, ProtobufError> {
    let mut reader = Reader(bytes);
    let (mut is_str, mut int, mut text) = (false, 0i64, String::new());
    while let Some((number, wire)) = reader.tag()? {
        match (number, wire) {
            (1, VARINT) => is_str = reader.varint()? == 1,
            (2, VARINT) => int = reader.varint()? as i64,
            (3, LEN) => text = utf8(reader.bytes()?)?,
            _ => reader.skip(wire)?,
        }
    }
    Ok(if is_str {
        Value::String(text)
    } else {
        Value::from(int)
    })
}

/// Go's zero `time.Time` (0001-01-01T00:00:00Z) in Unix seconds: the JSON for it is `null`.
const GO_ZERO_TIME: i64 = -62_135_596_800;

/// `metav1.Time` serialises to JSON with second precision.
fn time(bytes: &[u8]) -> Result<Value, ProtobufError> {
    let mut reader = Reader(bytes);
    let mut seconds = 0i64;
    while let Some((number, wire)) = reader.tag()? {
        match (number, wire) {
            (1, VARINT) => seconds = reader.varint()? as i64,
            _ => reader.skip(wire)?,
        }
    }
    if seconds == GO_ZERO_TIME {
        return Ok(Value::Null);
    }
    let at = chrono::DateTime::from_timestamp(seconds, 0).ok_or(ProtobufError::Malformed)?;
    Ok(Value::String(at.format("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

fn base64(bytes: &[u8]) -> Value {
    Value::String(base64::engine::general_purpose::STANDARD.encode(bytes))
}

fn utf8(bytes: &[u8]) -> Result<String, ProtobufError> {
    String::from_utf8(bytes.to_vec()).map_err(|_| ProtobufError::Malformed)
}

/// Reads the protobuf wire format from a byte slice.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let (&byte, rest) = self.0.split_first().ok_or(ProtobufError::Malformed)?;
            self.0 = rest;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(ProtobufError::Malformed)
    }

    /// The next field number and wire type, or None at the end of the message.
    fn tag(&mut self) -> Result<Option<(u64, u8)>, ProtobufError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        Ok(Some((tag >> 3, (tag & 7) as u8)))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtobufError> {
        if n > self.0.len() {
            return Err(ProtobufError::Malformed);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn bytes(&mut self) -> Result<&'a [u8], ProtobufError> {
        let len = usize::try_from(self.varint()?).map_err(|_| ProtobufError::Malformed)?;
        self.take(len)
    }

    fn skip(&mut self, wire: u8) -> Result<(), ProtobufError> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => self.take(4).map(drop),
            _ => Err(ProtobufError::Malformed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Minimal protobuf writer for building test bodies the way Go's generated code does.
    fn tag(n: u64, wire: u8, out: &mut Vec<u8>) {
        varint((n << 3) | u64::from(wire), out);
    }
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn len(n: u64, bytes: &[u8], out: &mut Vec<u8>) {
        tag(n, LEN, out);
        varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }
    fn entry(n: u64, k: &str, v: &[u8], out: &mut Vec<u8>) {
        let mut e = Vec::new();
        len(1, k.as_bytes(), &mut e);
        len(2, v, &mut e);
        len(n, &e, out);
    }
    fn envelope(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let mut type_meta = Vec::new();
        len(1, api_version.as_bytes(), &mut type_meta);
        len(2, kind.as_bytes(), &mut type_meta);
        let mut unknown = Vec::new();
        len(1, &type_meta, &mut unknown);
        len(2, raw, &mut unknown);
        len(4, b"application/vnd.kubernetes.protobuf", &mut unknown);
        [MAGIC, &unknown].concat()
    }

    #[test]
    fn config_map_decodes_to_kubernetes_json() {
        let mut meta = Vec::new();
        len(1, b"settings", &mut meta);
        entry(11, "app", b"web", &mut meta);
        let mut time = Vec::new();
        tag(1, VARINT, &mut time);
        varint(1_700_000_000, &mut time);
        len(8, &time, &mut meta);
        let mut cm = Vec::new();
        len(1, &meta, &mut cm);
        entry(2, "color", b"blue", &mut cm);
        entry(2, "size", b"2", &mut cm);
        entry(3, "blob", &[0, 1, 2], &mut cm);
        tag(4, VARINT, &mut cm);
        varint(1, &mut cm);
        tag(99, FIXED32, &mut cm); // an unknown field from a newer client is skipped
        cm.extend_from_slice(&[1, 2, 3, 4]);
        let value = decode(&envelope("v1", "ConfigMap", &cm)).unwrap();
        assert_eq!(
            value,
            json!({
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "settings", "labels": {"app": "web"}, "creationTimestamp": "2023-11-14T22:13:20Z"},
                "data": {"color": "blue", "size": "2"},
                "binaryData": {"blob": "AAEC"},
                "immutable": true,
            })
        );
    }

    #[test]
    fn secret_data_is_base64_and_repeated_fields_are_lists() {
        let mut meta = Vec::new();
        len(1, b"creds", &mut meta);
        // Zero values, as Go writes them, are left out like Go's JSON leaves them out.
        len(2, b"", &mut meta);
        tag(7, VARINT, &mut meta);
        varint(0, &mut meta);
        let mut zero_time = Vec::new();
        tag(1, VARINT, &mut zero_time);
        varint(GO_ZERO_TIME as u64, &mut zero_time);
        len(8, &zero_time, &mut meta);
        len(14, b"a/one", &mut meta);
        len(14, b"b/two", &mut meta);
        let mut secret = Vec::new();
        len(1, &meta, &mut secret);
        entry(2, "password", b"hunter2", &mut secret);
        len(3, b"Opaque", &mut secret);
        let value = decode(&envelope("v1", "Secret", &secret)).unwrap();
        assert_eq!(value["data"], json!({"password": "aHVudGVyMg=="}));
        assert_eq!(value["type"], "Opaque");
        assert_eq!(
            value["metadata"],
            json!({"name": "creds", "finalizers": ["a/one", "b/two"]})
        );
    }

    #[test]
    fn deployment_from_kubectl_create_decodes() {
        let mut labels = Vec::new();
        entry(11, "app", b"web", &mut labels);
        let mut meta = Vec::new();
        len(1, b"web", &mut meta);
        meta.extend_from_slice(&labels);
        let mut container = Vec::new();
        len(1, b"echo", &mut container);
        len(2, b"echo:1.0", &mut container);
        len(8, b"", &mut container);
        let mut pod_spec = Vec::new();
        len(2, &container, &mut pod_spec);
        let mut template = Vec::new();
        len(1, &labels, &mut template);
        len(2, &pod_spec, &mut template);
        let mut selector = Vec::new();
        entry(1, "app", b"web", &mut selector);
        let mut surge = Vec::new();
        tag(1, VARINT, &mut surge);
        varint(1, &mut surge);
        len(3, b"50%", &mut surge);
        let mut unavailable = Vec::new();
        tag(2, VARINT, &mut unavailable);
        varint(2, &mut unavailable);
        let mut rolling = Vec::new();
        len(1, &unavailable, &mut rolling);
        len(2, &surge, &mut rolling);
        let mut strategy = Vec::new();
        len(2, &rolling, &mut strategy);
        let mut spec = Vec::new();
        tag(1, VARINT, &mut spec);
        varint(0, &mut spec); // replicas: 0 is a value, not an absence
        len(2, &selector, &mut spec);
        len(3, &template, &mut spec);
        len(4, &strategy, &mut spec);
        let mut d = Vec::new();
        len(1, &meta, &mut d);
        len(2, &spec, &mut d);
        let value = decode(&envelope("apps/v1", "Deployment", &d)).unwrap();
        assert_eq!(
            value,
            json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {
                    "replicas": 0,
                    "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "echo", "image": "echo:1.0", "resources": {}}]}},
                    "strategy": {"rollingUpdate": {"maxUnavailable": 2, "maxSurge": "50%"}},
                },
            })
        );
    }

    #[test]
    fn bad_bodies_are_errors() {
        assert_eq!(decode(b"{}"), Err(ProtobufError::MissingMagic));
        let mut truncated = envelope("v1", "ConfigMap", b"");
        truncated.push(0x12); // a length-delimited field with no length
        assert_eq!(decode(&truncated), Err(ProtobufError::Malformed));
        assert_eq!(
            decode(&envelope("example.com/v1", "Widget", b"")),
            Err(ProtobufError::UnsupportedKind {
                api_version: "example.com/v1".into(),
                kind: "Widget".into()
            })
        );
        let mut wrong = Vec::new();
        tag(1, VARINT, &mut wrong);
        varint(5, &mut wrong);
        assert_eq!(
            decode(&envelope("v1", "ConfigMap", &wrong)),
            Err(ProtobufError::WireType {
                field: "metadata",
                wire: VARINT
            })
        );
    }
}
