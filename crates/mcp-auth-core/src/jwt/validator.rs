//! [`JwtValidator`]: the cheap structural checks, the signature check and the claim checks.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::Algorithm;
use serde::Deserialize;
use serde_json::{Map, Value};

use super::keys::{JwtConfigError, KeySet, VerifyingKey};
use crate::clock::{Clock, SystemClock};
use crate::error::TokenRejection;

/// Default maximum token size: 16 KiB.
pub const DEFAULT_MAX_TOKEN_SIZE: usize = 16 * 1024;

/// Default clock-skew leeway for `exp`, `nbf` and `iat`: 60 seconds.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(60);

/// The asymmetric algorithms accepted by default. HMAC algorithms must be listed explicitly.
const DEFAULT_ALGORITHMS: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

/// Decides on a token's `iss` when the accepted issuers cannot be listed up front, such as
/// the per-tenant issuers of a multi-tenant identity provider (Entra ID's
/// `https://login.microsoftonline.com/{tid}/v2.0`).
///
/// Set with [`JwtValidatorBuilder::issuer_policy`]. The validator consults it only for an
/// `iss` that is not one of the fixed [`JwtValidatorBuilder::issuer`]s, after the signature
/// and the time checks passed and before the audience check, with the token's claims.
///
/// ```
/// use std::sync::Arc;
/// use mcp_auth_core::TokenRejection;
/// use mcp_auth_core::jwt::{IssuerPolicy, JwtValidator};
/// use serde_json::{Map, Value};
///
/// /// `iss` must be `https://idp.example/{tid}` for the token's own `tid`, one of two tenants.
/// #[derive(Debug)]
/// struct PerTenant;
///
/// impl IssuerPolicy for PerTenant {
///     fn check(&self, issuer: &str, claims: &Map<String, Value>) -> Result<(), TokenRejection> {
///         let tid = claims.get("tid").and_then(Value::as_str);
///         let tid = tid.ok_or(TokenRejection::WrongIssuer)?;
///         if issuer != format!("https://idp.example/{tid}") {
///             return Err(TokenRejection::WrongIssuer);
///         }
///         match tid {
///             "t1" | "t2" => Ok(()),
///             _ => Err(TokenRejection::TenantNotAllowed),
///         }
///     }
/// }
///
/// let validator = JwtValidator::builder()
///     .issuer_policy(Arc::new(PerTenant))
///     .audience("api")
///     .build()
///     .unwrap();
/// # let _ = validator;
/// ```
pub trait IssuerPolicy: Send + Sync + fmt::Debug {
    /// Accepts `issuer` (the token's `iss`) given the token's `claims`, or says why not
    /// (usually [`TokenRejection::WrongIssuer`] or [`TokenRejection::TenantNotAllowed`]).
    fn check(&self, issuer: &str, claims: &Map<String, Value>) -> Result<(), TokenRejection>;
}

/// Checks compact JWS tokens: size, structure, header, signature and registered claims.
///
/// Secure by default: `exp`, `iss` and `aud` are required, `nbf` and `iat` are honoured with
/// a 60 s leeway, only asymmetric algorithms are allowed, unknown `crit` parameters are
/// rejected, and tokens over 16 KiB are rejected before any parsing. Time comes from the
/// injected [`Clock`].
///
/// ```
/// use mcp_auth_core::jwt::JwtValidator;
///
/// let validator = JwtValidator::builder()
///     .issuer("https://login.example.com")
///     .audience("https://mcp.example.com")
///     .required_type("at+jwt")
///     .build()
///     .unwrap();
/// assert!(validator.parse("not-a-token").is_err());
/// ```
#[derive(Clone)]
pub struct JwtValidator {
    issuers: Vec<String>,
    issuer_policy: Option<Arc<dyn IssuerPolicy>>,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: u64,
    max_lifetime: Option<u64>,
    required_type: Option<String>,
    understood_critical: Vec<String>,
    max_token_size: usize,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for JwtValidator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtValidator")
            .field("issuers", &self.issuers)
            .field("issuer_policy", &self.issuer_policy)
            .field("audiences", &self.audiences)
            .field("algorithms", &self.algorithms)
            .field("leeway", &self.leeway)
            .field("max_lifetime", &self.max_lifetime)
            .field("required_type", &self.required_type)
            .field("max_token_size", &self.max_token_size)
            .finish_non_exhaustive()
    }
}

/// Builds a [`JwtValidator`]; see [`JwtValidator::builder`].
#[derive(Debug)]
pub struct JwtValidatorBuilder {
    issuers: Vec<String>,
    issuer_policy: Option<Arc<dyn IssuerPolicy>>,
    audiences: Vec<String>,
    algorithms: Vec<Algorithm>,
    leeway: Duration,
    max_lifetime: Option<Duration>,
    required_type: Option<String>,
    understood_critical: Vec<String>,
    max_token_size: usize,
    clock: Arc<dyn Clock>,
}

impl JwtValidatorBuilder {
    /// Accepts tokens from `issuer` (the exact `iss` value). Call again for several issuers.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Accepts tokens from each of `issuers`.
    pub fn issuers<I, S>(mut self, issuers: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.issuers.extend(issuers.into_iter().map(Into::into));
        self
    }

    /// Decides on every `iss` that is not one of the fixed issuers (see [`IssuerPolicy`]).
    /// With a policy, the fixed issuers may be left empty.
    pub fn issuer_policy(mut self, policy: Arc<dyn IssuerPolicy>) -> Self {
        self.issuer_policy = Some(policy);
        self
    }

    /// Accepts tokens whose `aud` holds `audience`. With several audiences, any one suffices.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Accepts tokens whose `aud` holds any of `audiences`.
    pub fn audiences<I, S>(mut self, audiences: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.audiences.extend(audiences.into_iter().map(Into::into));
        self
    }

    /// Replaces the allowed algorithms (default: RS*, PS*, ES256, ES384, EdDSA). HS256/384/512
    /// work only if listed here and verified with an explicitly configured HMAC secret.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = algorithms.into_iter().collect();
        self
    }

    /// Clock-skew leeway for `exp`, `nbf` and `iat` (default 60 s, at most 5 minutes).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Rejects tokens whose `exp - iat` exceeds `max`; such tokens must carry `iat`.
    pub fn max_lifetime(mut self, max: Duration) -> Self {
        self.max_lifetime = Some(max);
        self
    }

    /// Requires the header `typ` (compared case-insensitively; `application/` prefix optional),
    /// for example `at+jwt` for RFC 9068 access tokens.
    pub fn required_type(mut self, typ: impl Into<String>) -> Self {
        self.required_type = Some(typ.into());
        self
    }

    /// Header parameters this application processes itself, so a `crit` naming them is
    /// accepted. By default every `crit` entry is unknown and the token is rejected.
    pub fn understood_critical<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.understood_critical
            .extend(names.into_iter().map(Into::into));
        self
    }

    /// Maximum token length in bytes, checked before any parsing (default 16 KiB).
    pub fn max_token_size(mut self, bytes: usize) -> Self {
        self.max_token_size = bytes;
        self
    }

    /// The clock used for `exp`, `nbf` and `iat` (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Checks the configuration and builds the validator.
    pub fn build(self) -> Result<JwtValidator, JwtConfigError> {
        if (self.issuers.is_empty() && self.issuer_policy.is_none())
            || self.issuers.iter().any(String::is_empty)
        {
            return Err(JwtConfigError::Invalid(
                "at least one non-empty issuer (or an issuer policy) is required",
            ));
        }
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return Err(JwtConfigError::Invalid(
                "at least one non-empty audience is required",
            ));
        }
        if self.algorithms.is_empty() {
            return Err(JwtConfigError::Invalid(
                "at least one algorithm must be allowed",
            ));
        }
        if self.leeway > Duration::from_secs(300) {
            return Err(JwtConfigError::Invalid("leeway above 5 minutes"));
        }
        if self.max_token_size < 64 {
            return Err(JwtConfigError::Invalid("max token size below 64 bytes"));
        }
        if self.max_lifetime.is_some_and(|d| d.is_zero()) {
            return Err(JwtConfigError::Invalid("max lifetime of zero"));
        }
        let required_type = match self.required_type {
            Some(t) if normalise_type(&t).is_empty() => {
                return Err(JwtConfigError::Invalid("empty required type"));
            }
            Some(t) => Some(normalise_type(&t).to_ascii_lowercase()),
            None => None,
        };
        Ok(JwtValidator {
            issuers: self.issuers,
            issuer_policy: self.issuer_policy,
            audiences: self.audiences,
            algorithms: self.algorithms,
            leeway: self.leeway.as_secs(),
            max_lifetime: self.max_lifetime.map(|d| d.as_secs()),
            required_type,
            understood_critical: self.understood_critical,
            max_token_size: self.max_token_size,
            clock: self.clock,
        })
    }
}

/// `application/at+jwt` and `at+jwt` name the same type (RFC 7515 section 4.1.9).
fn normalise_type(typ: &str) -> &str {
    let typ = typ.trim();
    match typ.split_at_checked("application/".len()) {
        Some((prefix, rest)) if prefix.eq_ignore_ascii_case("application/") => rest,
        _ => typ,
    }
}

/// The header fields the validator reads. Others are ignored; `jku`, `jwk`, `x5u` and
/// `x5c` in particular are never used to find a key.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    crit: Option<Vec<String>>,
}

/// A token that passed the cheap checks (size, structure, header, algorithm, `crit`, `typ`)
/// and whose signature has not been checked yet.
#[derive(Debug)]
pub struct ParsedToken<'a> {
    alg: Algorithm,
    kid: Option<String>,
    message: &'a str,
    payload: &'a str,
    signature: &'a str,
}

impl ParsedToken<'_> {
    /// The header `alg`.
    pub fn algorithm(&self) -> Algorithm {
        self.alg
    }

    /// The header `kid`, if any.
    pub fn kid(&self) -> Option<&str> {
        self.kid.as_deref()
    }
}

/// A token whose signature and registered claims were verified.
#[derive(Clone, Debug)]
pub struct VerifiedToken {
    claims: Map<String, Value>,
    issuer: String,
    expires_at: u64,
    issued_at: Option<u64>,
    token_id: Option<String>,
}

impl VerifiedToken {
    /// All claims of the payload.
    pub fn claims(&self) -> &Map<String, Value> {
        &self.claims
    }

    /// The `iss` claim.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The `exp` claim, in seconds since the Unix epoch.
    pub fn expires_at(&self) -> u64 {
        self.expires_at
    }

    /// The `iat` claim, if present.
    pub fn issued_at(&self) -> Option<u64> {
        self.issued_at
    }

    /// The `jti` claim, if present.
    pub fn token_id(&self) -> Option<&str> {
        self.token_id.as_deref()
    }

    /// Takes the claims out.
    pub fn into_claims(self) -> Map<String, Value> {
        self.claims
    }
}

/// A NumericDate claim (RFC 7519 section 2): a JSON number of seconds, possibly fractional.
fn numeric_date(
    claims: &Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, TokenRejection> {
    match claims.get(name) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                return Ok(Some(i));
            }
            match n.as_f64() {
                // The range check keeps the cast exact enough and free of saturation surprises.
                Some(f) if f.is_finite() && f.abs() < 1e15 => {
                    #[expect(clippy::cast_possible_truncation, reason = "range checked above")]
                    let secs = f.floor() as i64;
                    Ok(Some(secs))
                }
                _ => Err(TokenRejection::MissingClaim(name)),
            }
        }
        Some(_) => Err(TokenRejection::MissingClaim(name)),
    }
}

fn to_u64(secs: i64) -> u64 {
    u64::try_from(secs).unwrap_or(0)
}

impl JwtValidator {
    /// Starts a builder; [`JwtValidatorBuilder::build`] needs at least one issuer (or an
    /// [`IssuerPolicy`]) and one audience.
    pub fn builder() -> JwtValidatorBuilder {
        JwtValidatorBuilder {
            issuers: Vec::new(),
            issuer_policy: None,
            audiences: Vec::new(),
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
            leeway: DEFAULT_LEEWAY,
            max_lifetime: None,
            required_type: None,
            understood_critical: Vec::new(),
            max_token_size: DEFAULT_MAX_TOKEN_SIZE,
            clock: Arc::new(SystemClock),
        }
    }

    /// The leeway in seconds.
    pub fn leeway_secs(&self) -> u64 {
        self.leeway
    }

    /// The maximum token size in bytes.
    pub fn max_token_size(&self) -> usize {
        self.max_token_size
    }

    /// The clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// The current time in seconds since the Unix epoch, from the clock.
    pub(crate) fn now_secs(&self) -> i64 {
        match self.clock.now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(_) => 0,
        }
    }

    /// Rejects a token over the size limit. Runs before anything else looks at the token.
    pub fn check_size(&self, token: &str) -> Result<(), TokenRejection> {
        if token.len() > self.max_token_size {
            Err(TokenRejection::Oversized)
        } else {
            Ok(())
        }
    }

    /// The cheap checks: size, three segments, header base64url and JSON, algorithm
    /// allow-list (`none` is never allowed), `crit`, `typ`. No cryptography yet.
    pub fn parse<'a>(&self, token: &'a str) -> Result<ParsedToken<'a>, TokenRejection> {
        self.check_size(token)?;
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenRejection::Malformed("not three segments"));
        };
        if header.is_empty() || payload.is_empty() || signature.is_empty() {
            return Err(TokenRejection::Malformed("empty segment"));
        }
        let header_json = URL_SAFE_NO_PAD
            .decode(header)
            .map_err(|_| TokenRejection::Malformed("header is not base64url"))?;
        let header_fields: RawHeader = serde_json::from_slice(&header_json)
            .map_err(|_| TokenRejection::Malformed("header is not a JSON object"))?;
        let alg = Algorithm::from_str(&header_fields.alg)
            .map_err(|_| TokenRejection::AlgorithmNotAllowed)?;
        if !self.algorithms.contains(&alg) {
            return Err(TokenRejection::AlgorithmNotAllowed);
        }
        if let Some(crit) = &header_fields.crit {
            // RFC 7515 section 4.1.11: an empty list is invalid; every entry must be understood.
            if crit.is_empty() || crit.iter().any(|c| !self.understood_critical.contains(c)) {
                return Err(TokenRejection::UnknownCritical);
            }
        }
        if let Some(required) = &self.required_type {
            let matches = header_fields
                .typ
                .as_deref()
                .is_some_and(|t| normalise_type(t).eq_ignore_ascii_case(required));
            if !matches {
                return Err(TokenRejection::WrongType);
            }
        }
        let message_len = header.len() + 1 + payload.len();
        Ok(ParsedToken {
            alg,
            kid: header_fields.kid,
            message: token.get(..message_len).unwrap_or(token),
            payload,
            signature,
        })
    }

    /// Checks the signature of a parsed token with `key`, then its registered claims.
    pub fn verify(
        &self,
        token: &ParsedToken<'_>,
        key: &VerifyingKey,
    ) -> Result<VerifiedToken, TokenRejection> {
        key.verify(token.signature, token.message.as_bytes(), token.alg)?;
        let payload = URL_SAFE_NO_PAD
            .decode(token.payload)
            .map_err(|_| TokenRejection::Malformed("payload is not base64url"))?;
        let claims: Map<String, Value> = serde_json::from_slice(&payload)
            .map_err(|_| TokenRejection::Malformed("payload is not a JSON object"))?;
        self.check_claims(claims)
    }

    /// Parses, finds the key in `keys` and verifies: the whole check for static keys.
    pub fn validate(&self, token: &str, keys: &KeySet) -> Result<VerifiedToken, TokenRejection> {
        let parsed = self.parse(token)?;
        let key = keys.find(parsed.kid(), parsed.algorithm())?;
        self.verify(&parsed, key)
    }

    fn check_claims(&self, claims: Map<String, Value>) -> Result<VerifiedToken, TokenRejection> {
        let now = self.now_secs();
        let leeway = i64::try_from(self.leeway).unwrap_or(0);

        let exp = numeric_date(&claims, "exp")?.ok_or(TokenRejection::MissingClaim("exp"))?;
        if now >= exp.saturating_add(leeway) {
            return Err(TokenRejection::Expired);
        }
        if let Some(nbf) = numeric_date(&claims, "nbf")?
            && nbf > now.saturating_add(leeway)
        {
            return Err(TokenRejection::NotYetValid);
        }
        let iat = numeric_date(&claims, "iat")?;
        if let Some(iat) = iat
            && iat > now.saturating_add(leeway)
        {
            return Err(TokenRejection::IssuedInFuture);
        }
        if let Some(max) = self.max_lifetime {
            let iat = iat.ok_or(TokenRejection::MissingClaim("iat"))?;
            let lifetime = u64::try_from(exp.saturating_sub(iat)).unwrap_or(0);
            if lifetime > max {
                return Err(TokenRejection::LifetimeTooLong);
            }
        }

        let issuer = match claims.get("iss") {
            Some(Value::String(iss)) => iss,
            _ => return Err(TokenRejection::MissingClaim("iss")),
        };
        if !self.issuers.iter().any(|accepted| accepted == issuer) {
            match &self.issuer_policy {
                Some(policy) => policy.check(issuer, &claims)?,
                None => return Err(TokenRejection::WrongIssuer),
            }
        }
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => self.audiences.contains(aud),
            Some(Value::Array(auds)) => {
                let mut any = false;
                for aud in auds {
                    let aud = aud.as_str().ok_or(TokenRejection::MissingClaim("aud"))?;
                    any |= self.audiences.iter().any(|a| a == aud);
                }
                any
            }
            _ => return Err(TokenRejection::MissingClaim("aud")),
        };
        if !audience_ok {
            return Err(TokenRejection::WrongAudience);
        }
        let token_id = match claims.get("jti") {
            None => None,
            Some(Value::String(jti)) => Some(jti.clone()),
            Some(_) => return Err(TokenRejection::MissingClaim("jti")),
        };
        let issuer = issuer.clone();
        Ok(VerifiedToken {
            claims,
            issuer,
            expires_at: to_u64(exp),
            issued_at: iat.map(to_u64),
            token_id,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use jsonwebtoken::{EncodingKey, Header, encode};
    use serde_json::json;

    use super::*;
    use crate::clock::TestClock;
    use crate::credential::Secret;
    use crate::jwt::keys::tests::*;

    pub(crate) const NOW: u64 = 1_800_000_000;
    pub(crate) const ISS: &str = "https://issuer.test";
    pub(crate) const AUD: &str = "mcp-test";

    pub(crate) fn clock() -> Arc<TestClock> {
        TestClock::at(NOW)
    }

    pub(crate) fn validator() -> JwtValidator {
        JwtValidator::builder()
            .issuer(ISS)
            .audience(AUD)
            .clock(clock())
            .build()
            .unwrap()
    }

    /// A validator without leeway on `clock`, so expiry happens exactly at `exp`.
    pub(crate) fn strict_validator(clock: &Arc<TestClock>) -> JwtValidator {
        JwtValidator::builder()
            .issuer(ISS)
            .audience(AUD)
            .leeway(Duration::ZERO)
            .clock(clock.clone())
            .build()
            .unwrap()
    }

    pub(crate) fn claims() -> Value {
        json!({"iss": ISS, "aud": AUD, "sub": "alice", "exp": NOW + 600, "iat": NOW - 10})
    }

    pub(crate) fn sign(
        alg: Algorithm,
        private_pem: &str,
        kid: Option<&str>,
        claims: &Value,
    ) -> String {
        let key = match alg.family() {
            jsonwebtoken::AlgorithmFamily::Rsa => EncodingKey::from_rsa_pem(private_pem.as_bytes()),
            jsonwebtoken::AlgorithmFamily::Ec => EncodingKey::from_ec_pem(private_pem.as_bytes()),
            jsonwebtoken::AlgorithmFamily::Ed => EncodingKey::from_ed_pem(private_pem.as_bytes()),
            jsonwebtoken::AlgorithmFamily::Hmac => {
                Ok(EncodingKey::from_secret(private_pem.as_bytes()))
            }
        }
        .unwrap();
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        encode(&header, claims, &key).unwrap()
    }

    fn b64(value: &Value) -> String {
        URL_SAFE_NO_PAD.encode(value.to_string())
    }

    fn rsa_keys() -> KeySet {
        KeySet::new().with(VerifyingKey::from_pem(RSA_PUBLIC).unwrap().with_kid("k1"))
    }

    fn rejects(token: &str) -> TokenRejection {
        validator().validate(token, &rsa_keys()).unwrap_err()
    }

    #[expect(
        clippy::needless_pass_by_value,
        reason = "test helper called with json! literals"
    )]
    fn with_claims(patch: Value) -> String {
        let mut c = claims();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                c.as_object_mut().unwrap().remove(k);
            } else {
                c[k] = v.clone();
            }
        }
        sign(Algorithm::RS256, RSA_PRIVATE, Some("k1"), &c)
    }

    #[test]
    fn all_signature_algorithms_verify() {
        let cases = [
            (Algorithm::RS256, RSA_PRIVATE, RSA_PUBLIC),
            (Algorithm::RS384, RSA_PRIVATE, RSA_PUBLIC),
            (Algorithm::RS512, RSA_PRIVATE, RSA_PUBLIC),
            (Algorithm::PS256, RSA_PRIVATE, RSA_PUBLIC),
            (Algorithm::PS384, RSA_PRIVATE, RSA_PUBLIC),
            (Algorithm::PS512, RSA_PRIVATE, RSA_PUBLIC),
            (Algorithm::ES256, EC256_PRIVATE, EC256_PUBLIC),
            (Algorithm::ES384, EC384_PRIVATE, EC384_PUBLIC),
            (Algorithm::EdDSA, ED_PRIVATE, ED_PUBLIC),
        ];
        for (alg, private, public) in cases {
            let keys = KeySet::new().with(VerifyingKey::from_pem(public).unwrap());
            let token = sign(alg, private, None, &claims());
            let verified = validator().validate(&token, &keys).unwrap();
            assert_eq!(verified.issuer(), ISS, "{alg:?}");
            assert_eq!(verified.expires_at(), NOW + 600);
            assert_eq!(verified.claims()["sub"], "alice");
        }
    }

    #[test]
    fn hmac_only_with_explicit_secret() {
        let secret = "0123456789abcdef0123456789abcdef";
        let key = VerifyingKey::hmac(&Secret::new(secret), Algorithm::HS256).unwrap();
        let keys = KeySet::new().with(key);
        let token = sign(Algorithm::HS256, secret, None, &claims());
        // HS256 is not in the default allow-list.
        assert_eq!(
            validator().validate(&token, &keys).unwrap_err(),
            TokenRejection::AlgorithmNotAllowed
        );
        let hs = JwtValidator::builder()
            .issuer(ISS)
            .audience(AUD)
            .clock(clock())
            .algorithms([Algorithm::HS256, Algorithm::RS256])
            .build()
            .unwrap();
        assert!(hs.validate(&token, &keys).is_ok());

        // Alg confusion: HS256 "signed" with the RSA public key PEM as the secret.
        let forged = sign(Algorithm::HS256, RSA_PUBLIC, Some("k1"), &claims());
        assert!(hs.validate(&forged, &rsa_keys()).is_err());
        let forged_anon = sign(Algorithm::HS256, RSA_PUBLIC, None, &claims());
        let anon = KeySet::new().with(VerifyingKey::from_pem(RSA_PUBLIC).unwrap());
        assert_eq!(
            hs.validate(&forged_anon, &anon).unwrap_err(),
            TokenRejection::UnknownKey
        );
    }

    #[test]
    fn bad_tokens() {
        assert!(matches!(rejects(""), TokenRejection::Malformed(_)));
        assert!(matches!(rejects("a.b"), TokenRejection::Malformed(_)));
        assert!(matches!(rejects("a.b.c.d.e"), TokenRejection::Malformed(_)));
        assert!(matches!(rejects("!!!.b.c"), TokenRejection::Malformed(_)));
        let good = with_claims(json!({}));
        let (head, rest) = good.split_once('.').unwrap();
        let (payload, signature) = rest.split_once('.').unwrap();
        assert!(matches!(
            rejects(&format!("{head}.{payload}=.{signature}")),
            TokenRejection::Malformed(_) | TokenRejection::BadSignature
        ));
        assert!(matches!(
            rejects(&format!("{head}.{payload}.{signature}*")),
            TokenRejection::Malformed(_)
        ));

        let none = format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&claims()));
        assert!(matches!(rejects(&none), TokenRejection::Malformed(_)));
        let none = format!("{}.{}.AAAA", b64(&json!({"alg": "none"})), b64(&claims()));
        assert_eq!(rejects(&none), TokenRejection::AlgorithmNotAllowed);

        let tampered_claims = json!({"iss": ISS, "aud": AUD, "sub": "mallory", "exp": NOW + 600});
        let tampered = format!("{head}.{}.{signature}", b64(&tampered_claims));
        assert_eq!(rejects(&tampered), TokenRejection::BadSignature);

        let foreign = sign(Algorithm::RS256, RSA2_PRIVATE, Some("k1"), &claims());
        assert_eq!(rejects(&foreign), TokenRejection::BadSignature);
        let unknown = sign(Algorithm::RS256, RSA_PRIVATE, Some("nope"), &claims());
        assert_eq!(rejects(&unknown), TokenRejection::UnknownKey);

        let crit = format!(
            "{}.{payload}.{signature}",
            b64(&json!({"alg": "RS256", "kid": "k1", "crit": ["exp"], "exp": 1}))
        );
        assert_eq!(rejects(&crit), TokenRejection::UnknownCritical);

        let oversized = "a".repeat(DEFAULT_MAX_TOKEN_SIZE + 1);
        assert_eq!(rejects(&oversized), TokenRejection::Oversized);
    }

    #[test]
    fn claim_checks() {
        assert_eq!(
            rejects(&with_claims(json!({"exp": NOW - 61}))),
            TokenRejection::Expired
        );
        // Within the leeway.
        assert!(
            validator()
                .validate(&with_claims(json!({"exp": NOW - 30})), &rsa_keys())
                .is_ok()
        );
        assert_eq!(
            rejects(&with_claims(json!({"nbf": NOW + 120}))),
            TokenRejection::NotYetValid
        );
        assert!(
            validator()
                .validate(&with_claims(json!({"nbf": NOW + 30})), &rsa_keys())
                .is_ok()
        );
        assert_eq!(
            rejects(&with_claims(json!({"iat": NOW + 120}))),
            TokenRejection::IssuedInFuture
        );
        assert_eq!(
            rejects(&with_claims(json!({"iss": "https://evil.test"}))),
            TokenRejection::WrongIssuer
        );
        assert_eq!(
            rejects(&with_claims(json!({"aud": "other"}))),
            TokenRejection::WrongAudience
        );
        assert!(
            validator()
                .validate(&with_claims(json!({"aud": ["x", AUD]})), &rsa_keys())
                .is_ok()
        );
        assert_eq!(
            rejects(&with_claims(json!({"aud": ["x", "y"]}))),
            TokenRejection::WrongAudience
        );
        assert_eq!(
            rejects(&with_claims(json!({"exp": null}))),
            TokenRejection::MissingClaim("exp")
        );
        assert_eq!(
            rejects(&with_claims(json!({"exp": "soon"}))),
            TokenRejection::MissingClaim("exp")
        );
        assert_eq!(
            rejects(&with_claims(json!({"iss": null}))),
            TokenRejection::MissingClaim("iss")
        );
        assert_eq!(
            rejects(&with_claims(json!({"aud": null}))),
            TokenRejection::MissingClaim("aud")
        );
        assert!(
            validator()
                .validate(
                    &with_claims(json!({"exp": (NOW + 600) as f64 + 0.5})),
                    &rsa_keys()
                )
                .is_ok()
        );
    }

    #[test]
    fn lifetime_and_type() {
        let v = JwtValidator::builder()
            .issuers(["https://other.test", ISS])
            .audience(AUD)
            .max_lifetime(Duration::from_secs(3600))
            .required_type("at+jwt")
            .clock(clock())
            .build()
            .unwrap();
        let keys = rsa_keys();
        let typed = |typ: Option<&str>, claims: &Value| {
            let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
            let mut header = Header::new(Algorithm::RS256);
            header.typ = typ.map(str::to_owned);
            header.kid = Some("k1".into());
            encode(&header, claims, &key).unwrap()
        };
        assert!(v.validate(&typed(Some("at+jwt"), &claims()), &keys).is_ok());
        assert!(
            v.validate(&typed(Some("Application/AT+JWT"), &claims()), &keys)
                .is_ok()
        );
        assert_eq!(
            v.validate(&typed(Some("JWT"), &claims()), &keys)
                .unwrap_err(),
            TokenRejection::WrongType
        );
        assert_eq!(
            v.validate(&typed(None, &claims()), &keys).unwrap_err(),
            TokenRejection::WrongType
        );
        // Non-ASCII around the prefix boundary is just a wrong type.
        for odd in [
            "applicationé/at+jwt",
            "applicationé",
            "éééééé",
            "application/",
        ] {
            assert_eq!(
                v.validate(&typed(Some(odd), &claims()), &keys).unwrap_err(),
                TokenRejection::WrongType,
                "{odd}"
            );
        }
        let mut long = claims();
        long["exp"] = json!(NOW + 7200);
        assert_eq!(
            v.validate(&typed(Some("at+jwt"), &long), &keys)
                .unwrap_err(),
            TokenRejection::LifetimeTooLong
        );
        let mut no_iat = claims();
        no_iat.as_object_mut().unwrap().remove("iat");
        assert_eq!(
            v.validate(&typed(Some("at+jwt"), &no_iat), &keys)
                .unwrap_err(),
            TokenRejection::MissingClaim("iat")
        );
    }

    /// Accepts `https://{tid}.issuer.test` for tenants `t1` and `t2`, and counts its calls.
    #[derive(Debug, Default)]
    struct PerTenant(std::sync::atomic::AtomicUsize);

    impl IssuerPolicy for PerTenant {
        fn check(&self, issuer: &str, claims: &Map<String, Value>) -> Result<(), TokenRejection> {
            self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let tid = claims
                .get("tid")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if issuer != format!("https://{tid}.issuer.test") {
                return Err(TokenRejection::WrongIssuer);
            }
            if matches!(tid, "t1" | "t2") {
                Ok(())
            } else {
                Err(TokenRejection::TenantNotAllowed)
            }
        }
    }

    #[test]
    fn issuer_policy_decides_unlisted_issuers() {
        let policy = Arc::new(PerTenant::default());
        let v = JwtValidator::builder()
            .issuer(ISS)
            .issuer_policy(policy.clone())
            .audience(AUD)
            .clock(clock())
            .build()
            .unwrap();
        let keys = rsa_keys();
        // A listed issuer never reaches the policy.
        assert!(v.validate(&with_claims(json!({})), &keys).is_ok());
        assert_eq!(policy.0.load(std::sync::atomic::Ordering::Relaxed), 0);
        let token = |iss: &str, tid: &str| with_claims(json!({"iss": iss, "tid": tid}));
        assert!(
            v.validate(&token("https://t1.issuer.test", "t1"), &keys)
                .is_ok()
        );
        assert_eq!(
            v.validate(&token("https://t1.issuer.test", "t2"), &keys)
                .unwrap_err(),
            TokenRejection::WrongIssuer
        );
        assert_eq!(
            v.validate(&token("https://t3.issuer.test", "t3"), &keys)
                .unwrap_err(),
            TokenRejection::TenantNotAllowed
        );
        assert_eq!(policy.0.load(std::sync::atomic::Ordering::Relaxed), 3);
        // The audience is still checked after the policy accepted the issuer.
        let wrong_aud =
            with_claims(json!({"iss": "https://t1.issuer.test", "tid": "t1", "aud": "other"}));
        assert_eq!(
            v.validate(&wrong_aud, &keys).unwrap_err(),
            TokenRejection::WrongAudience
        );
        // A policy alone is enough configuration.
        let only_policy = JwtValidator::builder()
            .issuer_policy(policy)
            .audience(AUD)
            .clock(clock())
            .build()
            .unwrap();
        assert!(format!("{only_policy:?}").contains("PerTenant"));
        assert_eq!(
            only_policy
                .validate(&with_claims(json!({})), &keys)
                .unwrap_err(),
            TokenRejection::WrongIssuer
        );
    }

    #[test]
    fn builder_rejects_bad_config() {
        assert!(JwtValidator::builder().audience(AUD).build().is_err());
        assert!(JwtValidator::builder().issuer(ISS).build().is_err());
        assert!(
            JwtValidator::builder()
                .issuer(ISS)
                .audience(AUD)
                .algorithms([])
                .build()
                .is_err()
        );
        assert!(
            JwtValidator::builder()
                .issuer(ISS)
                .audience(AUD)
                .leeway(Duration::from_secs(3600))
                .build()
                .is_err()
        );
    }

    #[test]
    fn clock_drives_expiry() {
        let clock = clock();
        let v = strict_validator(&clock);
        let token = with_claims(json!({}));
        assert!(v.validate(&token, &rsa_keys()).is_ok());
        clock.set(NOW + 600);
        assert_eq!(
            v.validate(&token, &rsa_keys()).unwrap_err(),
            TokenRejection::Expired
        );
    }
}
