//! HTTP Message Signatures (RFC 9421) with ed25519, and `Content-Digest`
//! (RFC 9530, sha-256), for every request and response between brokers.
//!
//! A request signs `"@method" "@target-uri" "@authority" "content-digest"`,
//! plus `"idempotency-key"` (which POST and PUT must carry), with `created`,
//! `expires`, `nonce`, `keyid` and `alg="ed25519"`, under the label `sig1`.
//! A response signs `"@status" "content-digest"` and the request's own
//! signature (`"signature";req;key="sig1"`), so an answer cannot be replayed
//! to another request.
//!
//! The verifier recomputes the target URI and authority from its own public
//! URL, never from what the request claims, so a request signed for another
//! broker fails here. It accepts a signature only inside a five-minute
//! window, and a request nonce only once ([`NonceCache`]). Headers are
//! bounded before they are parsed.

use std::collections::HashMap;
use std::sync::Mutex;

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Verifier};
use sha2::{Digest, Sha256};

use super::identity::{KeyRing, PublicKey};
use crate::time::UnixTime;

/// Longest a signature is accepted after it was created, and longest span
/// between `created` and `expires`.
pub const WINDOW_SECS: i64 = 300;
/// How far ahead of this broker's clock a signature may be dated.
pub const ALLOWED_SKEW_SECS: i64 = 30;
/// The one signature label brokers use.
pub const LABEL: &str = "sig1";
/// Longest `Signature-Input`, `Signature` or `Content-Digest` header read.
pub const MAX_HEADER_BYTES: usize = 1024;
/// Longest nonce or idempotency key accepted.
pub const MAX_TOKEN_BYTES: usize = 128;

pub const SIGNATURE_INPUT: &str = "signature-input";
pub const SIGNATURE: &str = "signature";
pub const CONTENT_DIGEST: &str = "content-digest";
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Why a signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the {0} header is missing")]
    Missing(&'static str),
    #[error("the {0} header is longer than {MAX_HEADER_BYTES} bytes")]
    TooLong(&'static str),
    #[error("the {header} header is malformed: {why}")]
    Malformed { header: &'static str, why: String },
    #[error("the signature must cover {0}")]
    NotCovered(&'static str),
    #[error("the signature covers {0}, which this broker does not sign")]
    UnknownComponent(String),
    #[error("the signature lacks its {0} parameter")]
    MissingParameter(&'static str),
    #[error("the signature's algorithm must be ed25519")]
    WrongAlgorithm,
    #[error("no valid key with id {0} is known for the signer")]
    UnknownKey(String),
    #[error("the signature expired")]
    Expired,
    #[error("the signature is dated in the future")]
    FutureDated,
    #[error("the signature's validity is longer than {WINDOW_SECS} seconds")]
    WindowTooLong,
    #[error("this nonce was seen before")]
    Replayed,
    #[error("too many recent requests to remember their nonces; try again shortly")]
    NonceCacheFull,
    #[error("the body does not match its Content-Digest")]
    DigestMismatch,
    #[error("the signature does not verify")]
    BadSignature,
}

/// `Content-Digest` of `body`: `sha-256=:<base64>:`.
pub fn content_digest(body: &[u8]) -> String {
    format!("sha-256=:{}:", STANDARD.encode(Sha256::digest(body)))
}

/// A covered component: its name and parameters, like `"@status"` or
/// `"signature";req;key="sig1"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Component {
    pub name: String,
    pub params: Vec<(String, Param)>,
}

/// A parameter value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    Integer(i64),
    String(String),
    True,
}

impl Component {
    pub fn plain(name: &str) -> Self {
        Self {
            name: name.into(),
            params: Vec::new(),
        }
    }

    /// The request's signature under `label`, covered by a response.
    fn request_signature() -> Self {
        Self {
            name: SIGNATURE.into(),
            params: vec![
                ("req".into(), Param::True),
                ("key".into(), Param::String(LABEL.into())),
            ],
        }
    }

    /// Its serialized identifier, as in the signature base.
    pub fn identifier(&self) -> String {
        let mut s = format!("\"{}\"", self.name);
        write_params(&mut s, &self.params);
        s
    }
}

fn write_params(s: &mut String, params: &[(String, Param)]) {
    for (key, value) in params {
        s.push(';');
        s.push_str(key);
        match value {
            Param::Integer(i) => s.push_str(&format!("={i}")),
            Param::String(v) => s.push_str(&format!("=\"{v}\"")),
            Param::True => {}
        }
    }
}

/// The signature parameters: covered components and metadata.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureParams {
    pub components: Vec<Component>,
    pub params: Vec<(String, Param)>,
}

impl SignatureParams {
    /// Serialized as in `Signature-Input` and `@signature-params`.
    pub fn serialize(&self) -> String {
        let ids: Vec<String> = self.components.iter().map(Component::identifier).collect();
        let mut s = format!("({})", ids.join(" "));
        write_params(&mut s, &self.params);
        s
    }

    fn integer(&self, key: &str) -> Option<i64> {
        self.params.iter().find_map(|(k, v)| match v {
            Param::Integer(i) if k == key => Some(*i),
            _ => None,
        })
    }

    fn string(&self, key: &str) -> Option<&str> {
        self.params.iter().find_map(|(k, v)| match v {
            Param::String(s) if k == key => Some(s.as_str()),
            _ => None,
        })
    }

    /// Parses one inner list with parameters, e.g. `("@method");created=1`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let params = p.inner_list()?;
        if p.i != p.s.len() {
            return Err("unexpected text after the parameters".into());
        }
        Ok(params)
    }
}

/// A parser for the subset of Structured Field Values (RFC 8941) that
/// signatures use: strings, integers, tokens-as-keys, inner lists, parameters.
struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.get(self.i).copied()
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.i))
        }
    }

    fn key(&mut self) -> Result<String, String> {
        let start = self.i;
        while let Some(c) = self.peek() {
            let ok = if self.i == start {
                c.is_ascii_lowercase() || c == b'*'
            } else {
                c.is_ascii_lowercase() || c.is_ascii_digit() || b"_-.*".contains(&c)
            };
            if !ok {
                break;
            }
            self.i += 1;
        }
        if self.i == start {
            return Err(format!("expected a key at byte {start}"));
        }
        Ok(String::from_utf8_lossy(&self.s[start..self.i]).into_owned())
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect(b'"')?;
        let mut out = String::new();
        loop {
            match self.peek() {
                None => return Err("unterminated string".into()),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    match self.peek() {
                        Some(c @ (b'"' | b'\\')) => {
                            out.push(c as char);
                            self.i += 1;
                        }
                        _ => return Err("bad escape in a string".into()),
                    }
                }
                Some(c) if (0x20..0x7f).contains(&c) => {
                    out.push(c as char);
                    self.i += 1;
                }
                Some(_) => return Err("a string holds a character it may not".into()),
            }
        }
    }

    fn integer(&mut self) -> Result<i64, String> {
        let start = self.i;
        if self.peek() == Some(b'-') {
            self.i += 1;
        }
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.i += 1;
        }
        let digits = &self.s[start..self.i];
        if digits.is_empty() || digits == b"-" || digits.len() > 16 {
            return Err(format!(
                "expected an integer of at most 15 digits at byte {start}"
            ));
        }
        std::str::from_utf8(digits)
            .ok()
            .and_then(|d| d.parse().ok())
            .ok_or_else(|| "bad integer".into())
    }

    fn params(&mut self) -> Result<Vec<(String, Param)>, String> {
        let mut params = Vec::new();
        while self.peek() == Some(b';') {
            self.i += 1;
            let key = self.key()?;
            let value = if self.peek() == Some(b'=') {
                self.i += 1;
                match self.peek() {
                    Some(b'"') => Param::String(self.string()?),
                    Some(c) if c == b'-' || c.is_ascii_digit() => Param::Integer(self.integer()?),
                    _ => return Err(format!("unsupported value of parameter {key}")),
                }
            } else {
                Param::True
            };
            if params.iter().any(|(k, _)| *k == key) {
                return Err(format!("parameter {key} appears twice"));
            }
            if params.len() >= 16 {
                return Err("too many parameters".into());
            }
            params.push((key, value));
        }
        Ok(params)
    }

    fn inner_list(&mut self) -> Result<SignatureParams, String> {
        self.expect(b'(')?;
        let mut components = Vec::new();
        loop {
            while self.peek() == Some(b' ') {
                self.i += 1;
            }
            if self.peek() == Some(b')') {
                self.i += 1;
                break;
            }
            if components.len() >= 16 {
                return Err("too many covered components".into());
            }
            let name = self.string()?;
            let params = self.params()?;
            components.push(Component { name, params });
            match self.peek() {
                Some(b' ' | b')') => {}
                _ => return Err(format!("expected ' ' or ')' at byte {}", self.i)),
            }
        }
        let params = self.params()?;
        Ok(SignatureParams { components, params })
    }
}

/// The signature base (RFC 9421 section 2.5) for components with their
/// values, in order, and the serialized signature parameters.
pub fn signature_base(covered: &[(Component, String)], params: &SignatureParams) -> String {
    let mut base = String::new();
    for (component, value) in covered {
        base.push_str(&component.identifier());
        base.push_str(": ");
        base.push_str(value);
        base.push('\n');
    }
    base.push_str("\"@signature-params\": ");
    base.push_str(&params.serialize());
    base
}

/// Reads header `name` as text, bounded.
fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<&'h str, SignatureError> {
    let mut values = headers.get_all(name).iter();
    let value = values.next().ok_or(SignatureError::Missing(name))?;
    if values.next().is_some() {
        return Err(SignatureError::Malformed {
            header: name,
            why: "it appears more than once".into(),
        });
    }
    if value.len() > MAX_HEADER_BYTES {
        return Err(SignatureError::TooLong(name));
    }
    value.to_str().map_err(|_| SignatureError::Malformed {
        header: name,
        why: "it is not ASCII text".into(),
    })
}

/// The value of dictionary member `sig1` in a one-member dictionary header.
fn labelled<'h>(text: &'h str, header: &'static str) -> Result<&'h str, SignatureError> {
    let malformed = |why: &str| SignatureError::Malformed {
        header,
        why: why.into(),
    };
    let (label, value) = text
        .trim()
        .split_once('=')
        .ok_or_else(|| malformed("expected label=value"))?;
    if label != LABEL {
        return Err(malformed("expected the one label sig1"));
    }
    Ok(value)
}

fn parse_signature_value(value: &str) -> Result<Signature, SignatureError> {
    let malformed = |why: &str| SignatureError::Malformed {
        header: "Signature",
        why: why.into(),
    };
    let b64 = value
        .strip_prefix(':')
        .and_then(|v| v.strip_suffix(':'))
        .ok_or_else(|| malformed("expected :base64:"))?;
    let bytes = STANDARD.decode(b64).map_err(|_| malformed("not base64"))?;
    Signature::from_slice(&bytes).map_err(|_| malformed("not a 64-byte ed25519 signature"))
}

/// Checks that `headers` carry a `Content-Digest` whose sha-256 is `body`'s,
/// and returns the header's text.
fn check_digest<'h>(headers: &'h HeaderMap, body: &[u8]) -> Result<&'h str, SignatureError> {
    let text = header(headers, CONTENT_DIGEST)?;
    let expected = STANDARD.encode(Sha256::digest(body));
    let sha256 = text
        .split(',')
        .map(str::trim)
        .find_map(|member| member.strip_prefix("sha-256="))
        .ok_or(SignatureError::Malformed {
            header: "Content-Digest",
            why: "no sha-256 member".into(),
        })?;
    if sha256.strip_prefix(':').and_then(|v| v.strip_suffix(':')) != Some(expected.as_str()) {
        return Err(SignatureError::DigestMismatch);
    }
    Ok(text)
}

/// Signs `covered` with the ring's current key and returns the
/// `Signature-Input` and `Signature` headers' values.
fn sign(
    ring: &KeyRing,
    covered: &[(Component, String)],
    now: UnixTime,
    nonce: Option<String>,
) -> (String, String) {
    let (keyid, _) = ring.current();
    let mut params = vec![
        ("created".to_string(), Param::Integer(now.0)),
        ("expires".to_string(), Param::Integer(now.0 + WINDOW_SECS)),
    ];
    if let Some(nonce) = nonce {
        params.push(("nonce".into(), Param::String(nonce)));
    }
    params.push(("keyid".into(), Param::String(keyid.to_string())));
    params.push(("alg".into(), Param::String("ed25519".into())));
    let params = SignatureParams {
        components: covered.iter().map(|(c, _)| c.clone()).collect(),
        params,
    };
    let base = signature_base(covered, &params);
    let (_, signature) = ring.sign(base.as_bytes());
    (
        format!("{LABEL}={}", params.serialize()),
        format!("{LABEL}=:{}:", STANDARD.encode(signature.to_bytes())),
    )
}

/// What a request is, as the verifier sees it.
#[derive(Debug, Clone, Copy)]
pub struct RequestTarget<'a> {
    pub method: &'a str,
    /// The absolute URL, e.g. `https://broker.example/federation/v1/listings?cursor=3`.
    pub target_uri: &'a str,
    /// `host[:port]` as in the URL.
    pub authority: &'a str,
}

/// The headers a signed request carries.
pub fn sign_request(
    ring: &KeyRing,
    target: RequestTarget<'_>,
    body: &[u8],
    idempotency_key: Option<&str>,
    now: UnixTime,
) -> Vec<(HeaderName, HeaderValue)> {
    let digest = content_digest(body);
    let mut covered = vec![
        (Component::plain("@method"), target.method.to_string()),
        (
            Component::plain("@target-uri"),
            target.target_uri.to_string(),
        ),
        (Component::plain("@authority"), target.authority.to_string()),
        (Component::plain(CONTENT_DIGEST), digest.clone()),
    ];
    if let Some(key) = idempotency_key {
        covered.push((Component::plain(IDEMPOTENCY_KEY), key.to_string()));
    }
    let nonce = crate::token::generate_with("");
    let (input, signature) = sign(ring, &covered, now, Some(nonce));
    let mut headers = vec![
        (HeaderName::from_static(CONTENT_DIGEST), value(digest)),
        (HeaderName::from_static(SIGNATURE_INPUT), value(input)),
        (HeaderName::from_static(SIGNATURE), value(signature)),
    ];
    if let Some(key) = idempotency_key {
        headers.push((HeaderName::from_static(IDEMPOTENCY_KEY), value(key.into())));
    }
    headers
}

fn value(text: String) -> HeaderValue {
    HeaderValue::try_from(text).expect("signature headers are ASCII")
}

/// A request whose signature verified.
#[derive(Debug, Clone)]
pub struct VerifiedRequest {
    /// The key that signed it.
    pub keyid: String,
    /// The `sig1` member of its `Signature` header, which the response covers.
    pub signature: String,
    pub idempotency_key: Option<String>,
}

/// Parses and checks the signature parameters common to requests and
/// responses: algorithm, key, time window.
fn check_params(
    params: &SignatureParams,
    now: UnixTime,
    key_of: &dyn Fn(&str) -> Option<PublicKey>,
) -> Result<(String, ed25519_dalek::VerifyingKey), SignatureError> {
    if params.string("alg") != Some("ed25519") {
        return Err(SignatureError::WrongAlgorithm);
    }
    let keyid = params
        .string("keyid")
        .ok_or(SignatureError::MissingParameter("keyid"))?;
    let created = params
        .integer("created")
        .ok_or(SignatureError::MissingParameter("created"))?;
    let expires = params
        .integer("expires")
        .ok_or(SignatureError::MissingParameter("expires"))?;
    if created > now.0 + ALLOWED_SKEW_SECS {
        return Err(SignatureError::FutureDated);
    }
    if expires < now.0 || now.0 - created > WINDOW_SECS {
        return Err(SignatureError::Expired);
    }
    if expires - created > WINDOW_SECS || expires < created {
        return Err(SignatureError::WindowTooLong);
    }
    let key = key_of(keyid)
        .filter(|k| k.valid_at(now) && k.valid_at(UnixTime(created)))
        .and_then(|k| k.verifying_key())
        .ok_or_else(|| SignatureError::UnknownKey(keyid.to_string()))?;
    Ok((keyid.to_string(), key))
}

fn verify_base(
    key: &ed25519_dalek::VerifyingKey,
    covered: &[(Component, String)],
    params: &SignatureParams,
    signature: &Signature,
) -> Result<(), SignatureError> {
    let base = signature_base(covered, params);
    key.verify(base.as_bytes(), signature)
        .map_err(|_| SignatureError::BadSignature)
}

fn parse_input(headers: &HeaderMap) -> Result<SignatureParams, SignatureError> {
    let input = labelled(header(headers, SIGNATURE_INPUT)?, "Signature-Input")?;
    SignatureParams::parse(input).map_err(|why| SignatureError::Malformed {
        header: "Signature-Input",
        why,
    })
}

/// Verifies a request's signature, digest, window and nonce. `key_of`
/// finds the signer's published key by id.
pub fn verify_request(
    headers: &HeaderMap,
    target: RequestTarget<'_>,
    body: &[u8],
    now: UnixTime,
    key_of: &dyn Fn(&str) -> Option<PublicKey>,
    nonces: &NonceCache,
) -> Result<VerifiedRequest, SignatureError> {
    let params = parse_input(headers)?;
    let signature_text = labelled(header(headers, SIGNATURE)?, "Signature")?;
    let signature = parse_signature_value(signature_text)?;
    let digest = check_digest(headers, body)?;
    let idempotency_key = match headers.get(IDEMPOTENCY_KEY) {
        Some(_) => {
            let key = header(headers, IDEMPOTENCY_KEY)?;
            if key.is_empty() || key.len() > MAX_TOKEN_BYTES {
                return Err(SignatureError::Malformed {
                    header: "Idempotency-Key",
                    why: format!("it must be 1 to {MAX_TOKEN_BYTES} characters"),
                });
            }
            Some(key)
        }
        None if matches!(target.method, "POST" | "PUT") => {
            return Err(SignatureError::Missing("Idempotency-Key"));
        }
        None => None,
    };
    let mut covered = Vec::new();
    for component in &params.components {
        if !component.params.is_empty() {
            return Err(SignatureError::UnknownComponent(component.identifier()));
        }
        let value = match component.name.as_str() {
            "@method" => target.method,
            "@target-uri" => target.target_uri,
            "@authority" => target.authority,
            CONTENT_DIGEST => digest,
            IDEMPOTENCY_KEY => idempotency_key.ok_or(SignatureError::Missing("Idempotency-Key"))?,
            _ => return Err(SignatureError::UnknownComponent(component.identifier())),
        };
        if covered.iter().any(|(c, _)| c == component) {
            return Err(SignatureError::Malformed {
                header: "Signature-Input",
                why: format!("{} is covered twice", component.identifier()),
            });
        }
        covered.push((component.clone(), value.to_string()));
    }
    let mut required = vec!["@method", "@target-uri", "@authority", CONTENT_DIGEST];
    if idempotency_key.is_some() {
        required.push(IDEMPOTENCY_KEY);
    }
    for name in required {
        if !covered.iter().any(|(c, _)| c.name == name) {
            return Err(SignatureError::NotCovered(name));
        }
    }
    let nonce = params
        .string("nonce")
        .ok_or(SignatureError::MissingParameter("nonce"))?;
    if nonce.is_empty() || nonce.len() > MAX_TOKEN_BYTES {
        return Err(SignatureError::Malformed {
            header: "Signature-Input",
            why: format!("the nonce must be 1 to {MAX_TOKEN_BYTES} characters"),
        });
    }
    let (keyid, key) = check_params(&params, now, key_of)?;
    verify_base(&key, &covered, &params, &signature)?;
    let created = params.integer("created").unwrap_or(now.0);
    nonces.remember(
        &keyid,
        nonce,
        created + WINDOW_SECS + ALLOWED_SKEW_SECS,
        now,
    )?;
    Ok(VerifiedRequest {
        keyid,
        signature: signature_text.to_string(),
        idempotency_key: idempotency_key.map(str::to_string),
    })
}

/// The headers a signed response carries; `request_signature` is the
/// request's `sig1` signature value.
pub fn sign_response(
    ring: &KeyRing,
    status: u16,
    body: &[u8],
    request_signature: &str,
    now: UnixTime,
) -> Vec<(HeaderName, HeaderValue)> {
    let digest = content_digest(body);
    let covered = [
        (Component::plain("@status"), status.to_string()),
        (Component::plain(CONTENT_DIGEST), digest.clone()),
        (
            Component::request_signature(),
            request_signature.to_string(),
        ),
    ];
    let (input, signature) = sign(ring, &covered, now, None);
    vec![
        (HeaderName::from_static(CONTENT_DIGEST), value(digest)),
        (HeaderName::from_static(SIGNATURE_INPUT), value(input)),
        (HeaderName::from_static(SIGNATURE), value(signature)),
    ]
}

/// Verifies a response to a request signed with `request_signature`.
pub fn verify_response(
    headers: &HeaderMap,
    status: u16,
    body: &[u8],
    request_signature: &str,
    now: UnixTime,
    key_of: &dyn Fn(&str) -> Option<PublicKey>,
) -> Result<String, SignatureError> {
    let params = parse_input(headers)?;
    let signature = parse_signature_value(labelled(header(headers, SIGNATURE)?, "Signature")?)?;
    let digest = check_digest(headers, body)?;
    let wanted = [
        (Component::plain("@status"), status.to_string()),
        (Component::plain(CONTENT_DIGEST), digest.to_string()),
        (
            Component::request_signature(),
            request_signature.to_string(),
        ),
    ];
    for component in &params.components {
        if !wanted.iter().any(|(c, _)| c == component) {
            return Err(SignatureError::UnknownComponent(component.identifier()));
        }
    }
    for (component, name) in wanted
        .iter()
        .zip(["@status", CONTENT_DIGEST, "signature;req"])
    {
        if !params.components.contains(&component.0) {
            return Err(SignatureError::NotCovered(name));
        }
    }
    let covered: Vec<(Component, String)> = params
        .components
        .iter()
        .filter_map(|c| wanted.iter().find(|(w, _)| w == c).cloned())
        .collect();
    let (keyid, key) = check_params(&params, now, key_of)?;
    verify_base(&key, &covered, &params, &signature)?;
    Ok(keyid)
}

/// Nonces seen in signed requests, each kept until its signature's window
/// has passed, and at most [`NonceCache::CAPACITY`] at once: when full of
/// unexpired nonces, new requests are refused rather than remembered loosely.
#[derive(Default)]
pub struct NonceCache {
    seen: Mutex<HashMap<(String, String), i64>>,
}

impl NonceCache {
    pub const CAPACITY: usize = 100_000;

    /// Records `nonce` from `keyid` until `until`; refuses one seen before.
    pub fn remember(
        &self,
        keyid: &str,
        nonce: &str,
        until: i64,
        now: UnixTime,
    ) -> Result<(), SignatureError> {
        self.remember_bounded(keyid, nonce, until, now, Self::CAPACITY)
    }

    fn remember_bounded(
        &self,
        keyid: &str,
        nonce: &str,
        until: i64,
        now: UnixTime,
        capacity: usize,
    ) -> Result<(), SignatureError> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let key = (keyid.to_string(), nonce.to_string());
        if seen.get(&key).is_some_and(|&t| t >= now.0) {
            return Err(SignatureError::Replayed);
        }
        if seen.len() >= capacity {
            seen.retain(|_, t| *t >= now.0);
            if seen.len() >= capacity {
                return Err(SignatureError::NonceCacheFull);
            }
        }
        seen.insert(key, until);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    const NOW: UnixTime = UnixTime(1_800_000_000);

    fn ring() -> (tempfile::TempDir, KeyRing) {
        let dir = tempfile::tempdir().unwrap();
        let ring = KeyRing::load_or_create(dir.path(), UnixTime(NOW.0 - 1000)).unwrap();
        (dir, ring)
    }

    fn target() -> RequestTarget<'static> {
        RequestTarget {
            method: "POST",
            target_uri: "http://b.example:8000/federation/v1/peering",
            authority: "b.example:8000",
        }
    }

    fn headers(list: Vec<(HeaderName, HeaderValue)>) -> HeaderMap {
        list.into_iter().collect()
    }

    fn keys_of(ring: &KeyRing) -> impl Fn(&str) -> Option<PublicKey> + '_ {
        move |id| ring.published(NOW).into_iter().find(|k| k.keyid == id)
    }

    fn signed(ring: &KeyRing, body: &[u8]) -> HeaderMap {
        headers(sign_request(ring, target(), body, Some("op-1"), NOW))
    }

    #[test]
    fn a_signed_request_verifies_once() {
        let (_d, ring) = ring();
        let h = signed(&ring, b"{}");
        let nonces = NonceCache::default();
        let ok = verify_request(&h, target(), b"{}", NOW, &keys_of(&ring), &nonces).unwrap();
        assert_eq!(ok.keyid, ring.current().0);
        assert_eq!(ok.idempotency_key.as_deref(), Some("op-1"));
        let input = h.get(SIGNATURE_INPUT).unwrap().to_str().unwrap();
        assert!(
            input.starts_with(
                r#"sig1=("@method" "@target-uri" "@authority" "content-digest" "idempotency-key");created=1800000000;expires=1800000300;nonce=""#
            ),
            "{input}"
        );
        assert!(input.ends_with(&format!(r#";keyid="{}";alg="ed25519""#, ok.keyid)));
        assert_eq!(
            verify_request(&h, target(), b"{}", NOW, &keys_of(&ring), &nonces).unwrap_err(),
            SignatureError::Replayed
        );
        // A second request with a fresh nonce is fine.
        let again = signed(&ring, b"{}");
        verify_request(&again, target(), b"{}", NOW, &keys_of(&ring), &nonces).unwrap();
    }

    #[test]
    fn tampering_with_any_covered_part_is_caught() {
        let (_d, ring) = ring();
        let h = signed(&ring, b"{\"a\":1}");
        let check = |h: &HeaderMap, t: RequestTarget<'_>, body: &[u8]| {
            verify_request(h, t, body, NOW, &keys_of(&ring), &NonceCache::default())
        };
        assert_eq!(
            check(&h, target(), b"{\"a\":2}").unwrap_err(),
            SignatureError::DigestMismatch
        );
        let mut forged_digest = h.clone();
        forged_digest.insert(CONTENT_DIGEST, value(content_digest(b"{\"a\":2}")));
        assert_eq!(
            check(&forged_digest, target(), b"{\"a\":2}").unwrap_err(),
            SignatureError::BadSignature
        );
        let put = RequestTarget {
            method: "PUT",
            ..target()
        };
        assert_eq!(
            check(&h, put, b"{\"a\":1}").unwrap_err(),
            SignatureError::BadSignature
        );
        let other_path = RequestTarget {
            target_uri: "http://b.example:8000/federation/v1/other",
            ..target()
        };
        assert_eq!(
            check(&h, other_path, b"{\"a\":1}").unwrap_err(),
            SignatureError::BadSignature
        );
        let other_broker = RequestTarget {
            authority: "c.example:8000",
            ..target()
        };
        assert_eq!(
            check(&h, other_broker, b"{\"a\":1}").unwrap_err(),
            SignatureError::BadSignature
        );
        let mut other_key = h.clone();
        other_key.insert(IDEMPOTENCY_KEY, HeaderValue::from_static("op-2"));
        assert_eq!(
            check(&other_key, target(), b"{\"a\":1}").unwrap_err(),
            SignatureError::BadSignature
        );
        let mut dropped = h.clone();
        dropped.remove(IDEMPOTENCY_KEY);
        assert_eq!(
            check(&dropped, target(), b"{\"a\":1}").unwrap_err(),
            SignatureError::Missing("Idempotency-Key")
        );
    }

    #[test]
    fn another_key_or_an_unknown_one_is_refused() {
        let (_d, ring) = ring();
        let (_e, other) = super::tests::ring();
        let h = signed(&other, b"");
        let nonces = NonceCache::default();
        assert!(matches!(
            verify_request(&h, target(), b"", NOW, &keys_of(&ring), &nonces),
            Err(SignatureError::UnknownKey(_))
        ));
        // The other ring's signature under this ring's key id.
        let mut h = h;
        let input = h
            .get(SIGNATURE_INPUT)
            .unwrap()
            .to_str()
            .unwrap()
            .replace(other.current().0, ring.current().0);
        h.insert(SIGNATURE_INPUT, value(input));
        assert_eq!(
            verify_request(&h, target(), b"", NOW, &keys_of(&ring), &nonces).unwrap_err(),
            SignatureError::BadSignature
        );
    }

    #[test]
    fn old_and_future_signatures_are_refused() {
        let (_d, ring) = ring();
        let at = |t: i64| headers(sign_request(&ring, target(), b"", Some("k"), UnixTime(t)));
        let check = |h: &HeaderMap| {
            verify_request(
                h,
                target(),
                b"",
                NOW,
                &keys_of(&ring),
                &NonceCache::default(),
            )
        };
        assert_eq!(
            check(&at(NOW.0 - WINDOW_SECS - 1)).unwrap_err(),
            SignatureError::Expired
        );
        assert_eq!(
            check(&at(NOW.0 + 120)).unwrap_err(),
            SignatureError::FutureDated
        );
        check(&at(NOW.0 - 60)).unwrap();
        check(&at(NOW.0 + 10)).unwrap();
    }

    #[test]
    fn malformed_and_oversized_headers_are_refused_without_panicking() {
        let (_d, ring) = ring();
        let good = signed(&ring, b"");
        let check = |h: &HeaderMap| {
            verify_request(
                h,
                target(),
                b"",
                NOW,
                &keys_of(&ring),
                &NonceCache::default(),
            )
        };
        for (name, bad) in [
            (SIGNATURE_INPUT, "sig1=(\"@method\""),
            (
                SIGNATURE_INPUT,
                "sig1=(\"@method\");created=99999999999999999999",
            ),
            (SIGNATURE_INPUT, "sig2=(\"@method\");created=1"),
            (SIGNATURE_INPUT, "sig1=(\"@method\" \"@method\");created=1"),
            (
                SIGNATURE_INPUT,
                "sig1=(\"@method\" \"x-secret\");created=1;keyid=\"a\";alg=\"ed25519\";nonce=\"n\";expires=2",
            ),
            (SIGNATURE_INPUT, "sig1=();created=1;created=2"),
            (SIGNATURE_INPUT, "sig1=(\"\u{7f}\")"),
            (SIGNATURE, "sig1=:bm90IGEgc2lnbmF0dXJl:"),
            (SIGNATURE, "sig1=notcolons"),
            (SIGNATURE, "sig1=:!!!:"),
            (CONTENT_DIGEST, "sha-512=:AAAA:"),
            (IDEMPOTENCY_KEY, ""),
        ] {
            let mut h = good.clone();
            h.insert(
                name,
                HeaderValue::from_str(bad).unwrap_or(HeaderValue::from_static("x")),
            );
            let err = check(&h).unwrap_err();
            assert_ne!(err, SignatureError::Replayed, "{name}: {bad}");
        }
        let mut huge = good.clone();
        huge.insert(
            SIGNATURE_INPUT,
            value(format!("sig1=({})", "\"@method\" ".repeat(200))),
        );
        assert_eq!(
            check(&huge).unwrap_err(),
            SignatureError::TooLong(SIGNATURE_INPUT)
        );
        let mut missing = good.clone();
        missing.remove(SIGNATURE);
        assert_eq!(
            check(&missing).unwrap_err(),
            SignatureError::Missing(SIGNATURE)
        );
        let mut twice = good.clone();
        twice.append(SIGNATURE, HeaderValue::from_static("sig1=:AA==:"));
        assert!(matches!(
            check(&twice).unwrap_err(),
            SignatureError::Malformed { .. }
        ));
    }

    #[test]
    fn a_response_is_bound_to_its_request() {
        let (_d, ring) = ring();
        let request = verify_request(
            &signed(&ring, b""),
            target(),
            b"",
            NOW,
            &keys_of(&ring),
            &NonceCache::default(),
        )
        .unwrap();
        let body = b"{\"ok\":true}";
        let h = headers(sign_response(&ring, 200, body, &request.signature, NOW));
        let keys = keys_of(&ring);
        verify_response(&h, 200, body, &request.signature, NOW, &keys).unwrap();
        assert_eq!(
            verify_response(&h, 404, body, &request.signature, NOW, &keys).unwrap_err(),
            SignatureError::BadSignature
        );
        assert_eq!(
            verify_response(&h, 200, b"{}", &request.signature, NOW, &keys).unwrap_err(),
            SignatureError::DigestMismatch
        );
        let other = verify_request(
            &signed(&ring, b""),
            target(),
            b"",
            NOW,
            &keys,
            &NonceCache::default(),
        )
        .unwrap();
        assert_eq!(
            verify_response(&h, 200, body, &other.signature, NOW, &keys).unwrap_err(),
            SignatureError::BadSignature
        );
    }

    #[test]
    fn the_nonce_cache_is_bounded_and_forgets_expired_nonces() {
        let cache = NonceCache::default();
        for i in 0..3 {
            cache
                .remember_bounded("k", &i.to_string(), 100, UnixTime(10), 3)
                .unwrap();
        }
        assert_eq!(
            cache.remember_bounded("k", "x", 100, UnixTime(10), 3),
            Err(SignatureError::NonceCacheFull)
        );
        cache
            .remember_bounded("k", "x", 300, UnixTime(101), 3)
            .unwrap();
        assert_eq!(
            cache.remember_bounded("k", "x", 300, UnixTime(102), 3),
            Err(SignatureError::Replayed)
        );
        // Another signer's nonce is its own.
        cache
            .remember_bounded("j", "x", 300, UnixTime(102), 3)
            .unwrap();
    }

    /// RFC 9421 appendix B.2.6: the test request signed with the test key
    /// `test-key-ed25519` (appendix B.1.4) gives the published signature.
    #[test]
    fn the_rfc_9421_ed25519_example_gives_the_published_signature() {
        let pkcs8 = STANDARD
            .decode("MC4CAQAwBQYDK2VwBCIEIJ+DYvh6SEqVTm50DFtMDoQikTmiCqirVv9mWG9qfSnF")
            .unwrap();
        let spki = STANDARD
            .decode("MCowBQYDK2VwAyEAJrQLj5P/89iXES9+vFgrIy29clF9CC/oPPsw3c5D0bs=")
            .unwrap();
        let key = SigningKey::from_bytes(&pkcs8[16..].try_into().unwrap());
        assert_eq!(key.verifying_key().as_bytes(), &spki[12..]);

        let input = r#"("date" "@method" "@path" "@authority" "content-type" "content-length");created=1618884473;keyid="test-key-ed25519""#;
        let params = SignatureParams::parse(input).unwrap();
        assert_eq!(params.serialize(), input);
        let values = [
            "Tue, 20 Apr 2021 02:07:55 GMT",
            "POST",
            "/foo",
            "example.com",
            "application/json",
            "18",
        ];
        let covered: Vec<(Component, String)> = params
            .components
            .iter()
            .cloned()
            .zip(values.iter().map(|v| v.to_string()))
            .collect();
        let base = signature_base(&covered, &params);
        assert_eq!(
            base,
            "\"date\": Tue, 20 Apr 2021 02:07:55 GMT\n\"@method\": POST\n\"@path\": /foo\n\"@authority\": example.com\n\"content-type\": application/json\n\"content-length\": 18\n\"@signature-params\": (\"date\" \"@method\" \"@path\" \"@authority\" \"content-type\" \"content-length\");created=1618884473;keyid=\"test-key-ed25519\""
        );
        let published = parse_signature_value(
            ":wqcAqbmYJ2ji2glfAMaRy4gruYYnx2nEFN2HN6jrnDnQCK1u02Gb04v9EDgwUPiu4A0w6vuQv5lIp5WPpBKRCw==:",
        )
        .unwrap();
        assert_eq!(key.sign(base.as_bytes()), published);
        verify_base(&key.verifying_key(), &covered, &params, &published).unwrap();
    }

    #[test]
    fn content_digest_matches_rfc_9530() {
        // The 18-byte body of RFC 9421's test request, digested as RFC 9530 does.
        assert_eq!(
            content_digest(b"{\"hello\": \"world\"}"),
            "sha-256=:X48E9qOokqqrvdts8nOJRJN3OWDUoyWxBf7kbu9DBPE=:"
        );
    }
}
