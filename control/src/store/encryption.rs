//! Secrets encrypted at rest: no Secret byte reaches the raft log, the sled state or a
//! snapshot in plaintext.
//!
//! Design (Kubernetes' KMS v2 envelope, with its key derivation):
//!
//! - A **key-encryption key** (KEK, 256 bits) is generated at init and kept outside the store,
//!   in `<data-dir>/tls/encryption.key` (mode 0600) beside the CA key. Every member holds
//!   the same one: a joining member receives it with the CA key in the token-authenticated
//!   bootstrap exchange.
//! - **Data keys** (256-bit seeds) live in the replicated store, in one keyring record
//!   (`KEYRING`, never served by the API), each wrapped by the KEK with AES-256-GCM. One of
//!   them is current. Because the keyring is replicated, every member agrees on the current
//!   key, and rotation is an ordinary compare-and-set write of that record.
//! - Every object under `secrets/` is sealed **before it is proposed to raft**: the whole
//!   object (so `data`, and also annotations such as kubectl's last-applied-configuration,
//!   which repeat it) becomes an envelope `{"metadata": {"resourceVersion"}, "encrypted":
//!   {"key", "salt", "nonce", "data"}}`. The state machine only needs the resourceVersion,
//!   which stays outside. The storage key (`secrets/<ns>/<name>`) is the associated data, so
//!   a ciphertext moved to another name does not open.
//! - **Nonces never repeat for a key**: each write derives its own AES-256-GCM key with
//!   HKDF-SHA256 from the data key and a random 256-bit salt (KMS v2's `KMSv2KDF`), and that
//!   key seals that one message. Two writes share a key only if their salts collide
//!   (probability 2^-256 per pair), so no per-key write counter has to be coordinated
//!   between members; the random 96-bit nonce is a second, independent safeguard.
//! - Reads (get, list, watch events, the node's client, which all go through the store)
//!   open envelopes transparently; a stored object that is not an envelope is plaintext
//!   from before encryption existed and is returned as is (the upgrade path).
//! - The state machine refuses a sealed write whose key is not the keyring's current one
//!   (see [`check_sealed_write`]); the writer seals again with the new key. So once a
//!   rotation has committed, no write with an older key is applied anywhere, and after its
//!   re-encryption pass no Secret is left on an older key: it can be retired safely.

use std::collections::HashMap;
use std::fs;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest as _;

/// Objects stored under this prefix are encrypted.
pub const SEALED_PREFIX: &str = "secrets/";
/// The keyring's record in the state: a `\x01` record like the members', so it is part of
/// every snapshot but never an object an API path reaches.
pub const KEYRING: &str = "\u{1}encryption/keyring";
/// The KEK's file, relative to the data directory.
pub const KEK_FILE: &str = "tls/encryption.key";
/// What HKDF binds each derived key to, so the data keys serve no other purpose.
const KDF_INFO: &[u8] = b"wkube secrets at rest v1";
const KEY_LEN: usize = 32;
const SALT_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}: not a key-encryption key (expected 32 bytes, base64)")]
    BadKeyFile(PathBuf),
    #[error("key-encryption key: expected 32 bytes, base64")]
    BadKey,
    #[error("data key {0} is not in the keyring")]
    UnknownKey(String),
    #[error("data key {id} is wrapped by key-encryption key {wrapped_by}, but this member's is {ours}: copy {KEK_FILE} from a member of this cluster")]
    WrongKek {
        id: String,
        wrapped_by: String,
        ours: String,
    },
    #[error("{0}: the encrypted record does not open (altered, or sealed with another key)")]
    Open(String),
    #[error("{0}: malformed encrypted record")]
    Malformed(String),
    #[error("the system random number generator failed")]
    Random,
}

fn random<const N: usize>(rng: &SystemRandom) -> Result<[u8; N], EncryptionError> {
    let mut out = [0u8; N];
    rng.fill(&mut out).map_err(|_| EncryptionError::Random)?;
    Ok(out)
}

/// AES-256-GCM of `plain` with `key`, returned as `nonce || ciphertext || tag`.
fn seal_with(
    key: &LessSafeKey,
    rng: &SystemRandom,
    aad: &[u8],
    plain: &[u8],
) -> Result<Vec<u8>, EncryptionError> {
    let nonce = random::<NONCE_LEN>(rng)?;
    let mut sealed = plain.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut sealed,
    )
    .map_err(|_| EncryptionError::Random)?;
    Ok([nonce.as_slice(), &sealed].concat())
}

/// The inverse of [`seal_with`]; `what` names the record in errors.
fn open_with(
    key: &LessSafeKey,
    aad: &[u8],
    sealed: &[u8],
    what: &str,
) -> Result<Vec<u8>, EncryptionError> {
    let (nonce, rest) = sealed
        .split_first_chunk::<NONCE_LEN>()
        .ok_or_else(|| EncryptionError::Malformed(what.into()))?;
    let mut buf = rest.to_vec();
    let plain = key
        .open_in_place(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(aad),
            &mut buf,
        )
        .map_err(|_| EncryptionError::Open(what.into()))?;
    Ok(plain.to_vec())
}

fn aes_key(bytes: &[u8]) -> LessSafeKey {
    // ring refuses only a key of the wrong length, and every caller passes 32 bytes.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("a 256-bit key"))
}

/// The key-encryption key: wraps the data keys, never stored in the replicated state.
pub struct Kek {
    bytes: [u8; KEY_LEN],
    key: LessSafeKey,
    /// A fingerprint naming the key in the keyring and in errors, not revealing it.
    id: String,
}

impl Kek {
    fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let digest = sha2::Sha256::digest([b"wkube kek id".as_slice(), &bytes].concat());
        Kek {
            key: aes_key(&bytes),
            id: hex(&digest[..8]),
            bytes,
        }
    }

    pub fn generate() -> Result<Self, EncryptionError> {
        Ok(Self::from_bytes(random(&SystemRandom::new())?))
    }

    /// The base64 form, as the key file and the bootstrap exchange carry it.
    pub fn encoded(&self) -> String {
        B64.encode(self.bytes)
    }

    pub fn decode(encoded: &str) -> Result<Self, EncryptionError> {
        let bytes = B64
            .decode(encoded.trim())
            .map_err(|_| EncryptionError::BadKey)?;
        Ok(Self::from_bytes(
            bytes.try_into().map_err(|_| EncryptionError::BadKey)?,
        ))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Reads `<data_dir>/tls/encryption.key`, creating it (mode 0600) if there is none.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, EncryptionError> {
        let path = data_dir.join(KEK_FILE);
        match fs::read_to_string(&path) {
            Ok(s) => Self::decode(&s).map_err(|_| EncryptionError::BadKeyFile(path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let kek = Self::generate()?;
                kek.write(data_dir)?;
                Ok(kek)
            }
            Err(source) => Err(EncryptionError::Io { path, source }),
        }
    }

    /// Writes the key file atomically (a joining member adopts the cluster's key).
    pub fn write(&self, data_dir: &Path) -> Result<(), EncryptionError> {
        let path = data_dir.join(KEK_FILE);
        let tmp = path.with_extension("tmp");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| EncryptionError::Io { path, source }
        };
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(self.encoded().as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        fs::rename(&tmp, &path).map_err(io(&path))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One data key as the keyring records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataKey {
    pub id: String,
    /// The KEK that wrapped it (its fingerprint).
    pub kek: String,
    /// `nonce || AES-256-GCM(seed)`, base64.
    pub wrapped: String,
    pub created: String,
}

/// The replicated keyring: the data keys and which one seals new writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Keyring {
    /// Carries the resourceVersion, for compare-and-set updates.
    #[serde(default)]
    pub metadata: Value,
    pub current: String,
    pub keys: Vec<DataKey>,
}

impl Keyring {
    pub fn parse(record: &Value) -> Result<Self, EncryptionError> {
        serde_json::from_value(record.clone())
            .map_err(|_| EncryptionError::Malformed(KEYRING.into()))
    }

    /// The record's resourceVersion, for a compare-and-set update.
    pub fn revision(&self) -> u64 {
        self.metadata["resourceVersion"]
            .as_str()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0)
    }

    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).unwrap_or_default()
    }
}

/// The data key a stored object was sealed with; `None` for plaintext.
pub fn sealed_with(object: &Value) -> Option<&str> {
    object.pointer("/encrypted/key").and_then(Value::as_str)
}

/// Whether objects under `key` are sealed.
pub fn is_sealed_key(key: &str) -> bool {
    key.starts_with(SEALED_PREFIX)
}

/// The state machine's rule for a write of `object` given the keyring record as it stands
/// at that point of the log: a sealed object must use the current key. Deterministic, so
/// every member decides the same.
pub fn check_sealed_write(object: &Value, keyring: Option<&Value>) -> bool {
    match sealed_with(object) {
        None => true,
        Some(id) => {
            keyring
                .and_then(|k| k.get("current"))
                .and_then(Value::as_str)
                == Some(id)
        }
    }
}

/// Seals and opens objects with the data keys of a keyring, unwrapped by this member's KEK.
pub struct Sealer {
    kek: Kek,
    rng: SystemRandom,
    /// Unwrapped data-key seeds by id; data keys never change once created.
    seeds: Mutex<HashMap<String, Arc<[u8; KEY_LEN]>>>,
}

impl Sealer {
    pub fn new(kek: Kek) -> Self {
        Sealer {
            kek,
            rng: SystemRandom::new(),
            seeds: Mutex::default(),
        }
    }

    /// A new data key, wrapped by the KEK, to add to the keyring.
    pub fn new_data_key(&self) -> Result<DataKey, EncryptionError> {
        let seed: [u8; KEY_LEN] = random(&self.rng)?;
        let id = hex(&random::<8>(&self.rng)?);
        let wrapped = seal_with(&self.kek.key, &self.rng, id.as_bytes(), &seed)?;
        self.remember(&id, seed);
        Ok(DataKey {
            id,
            kek: self.kek.id.clone(),
            wrapped: B64.encode(wrapped),
            created: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        })
    }

    fn remember(&self, id: &str, seed: [u8; KEY_LEN]) -> Arc<[u8; KEY_LEN]> {
        let seed = Arc::new(seed);
        self.seeds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), seed.clone());
        seed
    }

    fn seed(&self, keyring: &Keyring, id: &str) -> Result<Arc<[u8; KEY_LEN]>, EncryptionError> {
        if let Some(seed) = self.seeds.lock().unwrap_or_else(|p| p.into_inner()).get(id) {
            return Ok(seed.clone());
        }
        let key = keyring
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| EncryptionError::UnknownKey(id.into()))?;
        if key.kek != self.kek.id {
            return Err(EncryptionError::WrongKek {
                id: id.into(),
                wrapped_by: key.kek.clone(),
                ours: self.kek.id.clone(),
            });
        }
        let what = format!("data key {id}");
        let wrapped = B64
            .decode(&key.wrapped)
            .map_err(|_| EncryptionError::Malformed(what.clone()))?;
        let seed = open_with(&self.kek.key, id.as_bytes(), &wrapped, &what)?;
        let seed = seed
            .try_into()
            .map_err(|_| EncryptionError::Malformed(what))?;
        Ok(self.remember(id, seed))
    }

    /// The one-message key for `salt` (see the module comment).
    fn message_key(seed: &[u8; KEY_LEN], salt: &[u8]) -> LessSafeKey {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(seed);
        let okm = prk
            .expand(&[KDF_INFO], &AES_256_GCM)
            .expect("AES-256-GCM's key length is within HKDF's limit");
        LessSafeKey::new(UnboundKey::from(okm))
    }

    /// The envelope that replaces `object` under `key`, sealed with the current data key.
    pub fn seal(
        &self,
        keyring: &Keyring,
        key: &str,
        object: &Value,
    ) -> Result<Value, EncryptionError> {
        let id = &keyring.current;
        let seed = self.seed(keyring, id)?;
        let salt: [u8; SALT_LEN] = random(&self.rng)?;
        let plain =
            serde_json::to_vec(object).map_err(|_| EncryptionError::Malformed(key.into()))?;
        let sealed = seal_with(
            &Self::message_key(&seed, &salt),
            &self.rng,
            key.as_bytes(),
            &plain,
        )?;
        Ok(json!({
            "metadata": {},
            "encrypted": {"key": id, "salt": B64.encode(salt), "data": B64.encode(sealed)},
        }))
    }

    /// The object an envelope holds, with the envelope's resourceVersion; a plaintext
    /// object is returned as it is.
    pub fn open(
        &self,
        keyring: Option<&Keyring>,
        key: &str,
        stored: &Value,
    ) -> Result<Value, EncryptionError> {
        let Some(id) = sealed_with(stored) else {
            return Ok(stored.clone());
        };
        let keyring = keyring.ok_or_else(|| EncryptionError::UnknownKey(id.into()))?;
        let seed = self.seed(keyring, id)?;
        let malformed = || EncryptionError::Malformed(key.into());
        let field = |name: &str| {
            stored["encrypted"][name]
                .as_str()
                .and_then(|s| B64.decode(s).ok())
                .ok_or_else(malformed)
        };
        let plain = open_with(
            &Self::message_key(&seed, &field("salt")?),
            key.as_bytes(),
            &field("data")?,
            key,
        )?;
        let object = serde_json::from_slice(&plain).map_err(|_| malformed())?;
        Ok(with_revision_of(object, stored))
    }
}

/// `object` with the resourceVersion of `stored`, its envelope: the state machine sets it on
/// the envelope, which is all it sees.
pub fn with_revision_of(mut object: Value, stored: &Value) -> Value {
    if let (Some(meta), Some(rv)) = (
        object.get_mut("metadata").and_then(Value::as_object_mut),
        stored.pointer("/metadata/resourceVersion"),
    ) {
        meta.insert("resourceVersion".into(), rv.clone());
    }
    object
}

/// What a scan of a member's raw storage found (`wkube secrets check`).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    /// Secret records in the state, by the data key that sealed them.
    pub sealed: HashMap<String, u64>,
    /// Storage keys of Secrets stored in plaintext.
    pub plaintext: Vec<String>,
    /// Raft log entries (still retained) that write a Secret in plaintext, by index.
    pub plaintext_log_entries: Vec<u64>,
    pub current_key: Option<String>,
    pub keys: Vec<String>,
}

impl CheckReport {
    pub fn clean(&self) -> bool {
        self.plaintext.is_empty() && self.plaintext_log_entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring(sealer: &Sealer) -> Keyring {
        let key = sealer.new_data_key().unwrap();
        Keyring {
            metadata: json!({}),
            current: key.id.clone(),
            keys: vec![key],
        }
    }

    #[test]
    fn a_sealed_object_opens_only_under_its_own_key_and_name() {
        let sealer = Sealer::new(Kek::generate().unwrap());
        let ring = keyring(&sealer);
        let secret = json!({"kind": "Secret", "metadata": {"name": "s", "resourceVersion": "3"}, "data": {"p": "aHVudGVyMg=="}});
        let mut sealed = sealer.seal(&ring, "secrets/default/s", &secret).unwrap();
        let text = sealed.to_string();
        assert!(
            !text.contains("aHVudGVyMg==") && !text.contains("\"s\""),
            "{text}"
        );
        sealed["metadata"]["resourceVersion"] = json!("7");
        let opened = sealer
            .open(Some(&ring), "secrets/default/s", &sealed)
            .unwrap();
        assert_eq!(opened["data"], secret["data"]);
        assert_eq!(opened["metadata"]["resourceVersion"], "7");
        assert!(matches!(
            sealer.open(Some(&ring), "secrets/default/other", &sealed),
            Err(EncryptionError::Open(_))
        ));
        // Another member of the same cluster (same KEK, empty cache) opens it too.
        let same = Sealer::new(Kek::decode(&sealer.kek.encoded()).unwrap());
        assert_eq!(
            same.open(Some(&ring), "secrets/default/s", &sealed)
                .unwrap(),
            opened
        );
        let stranger = Sealer::new(Kek::generate().unwrap());
        assert!(matches!(
            stranger.open(Some(&ring), "secrets/default/s", &sealed),
            Err(EncryptionError::WrongKek { .. })
        ));
    }

    #[test]
    fn two_seals_of_the_same_object_differ() {
        let sealer = Sealer::new(Kek::generate().unwrap());
        let ring = keyring(&sealer);
        let o = json!({"metadata": {}, "data": {"a": "YQ=="}});
        let a = sealer.seal(&ring, "secrets/n/a", &o).unwrap();
        let b = sealer.seal(&ring, "secrets/n/a", &o).unwrap();
        assert_ne!(a["encrypted"]["salt"], b["encrypted"]["salt"]);
        assert_ne!(a["encrypted"]["data"], b["encrypted"]["data"]);
    }

    #[test]
    fn plaintext_from_before_encryption_reads_as_is() {
        let sealer = Sealer::new(Kek::generate().unwrap());
        let o = json!({"metadata": {"name": "old"}, "data": {"a": "YQ=="}});
        assert_eq!(sealer.open(None, "secrets/n/old", &o).unwrap(), o);
    }

    #[test]
    fn only_the_current_key_may_seal_a_write() {
        let keyring = json!({"current": "k2", "keys": []});
        assert!(check_sealed_write(
            &json!({"encrypted": {"key": "k2"}}),
            Some(&keyring)
        ));
        assert!(!check_sealed_write(
            &json!({"encrypted": {"key": "k1"}}),
            Some(&keyring)
        ));
        assert!(!check_sealed_write(
            &json!({"encrypted": {"key": "k1"}}),
            None
        ));
        assert!(check_sealed_write(&json!({"data": {}}), None));
    }

    #[test]
    fn the_key_file_is_private_and_reloads() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let kek = Kek::load_or_create(dir.path()).unwrap();
        let mode = fs::metadata(dir.path().join(KEK_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(Kek::load_or_create(dir.path()).unwrap().id(), kek.id());
    }
}
