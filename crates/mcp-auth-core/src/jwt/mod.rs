//! JWT verification: [`JwtValidator`] (structure, signature, claims), keys ([`VerifyingKey`],
//! [`KeySet`], [`KeyResolver`]) and [`JwtAuthenticator`], the bearer-token [`Authenticator`].
//!
//! Keys are read with `jsonwebtoken` and verified with aws-lc-rs, each parsed once when it is
//! loaded (not for every token): RS256/384/512, PS256/384/512, ES256/384 and EdDSA, and
//! HS256/384/512 only with an explicitly configured secret. A key's type decides the
//! algorithms it may verify, so a public key is never used as an HMAC secret (the
//! alg-confusion attack).
//!
//! [`Authenticator`]: crate::Authenticator

mod authenticator;
mod keys;
mod validator;

pub use authenticator::{JwtAuthenticator, JwtAuthenticatorBuilder};
pub use jsonwebtoken::Algorithm;
pub use jsonwebtoken::jwk::{Jwk, JwkSet};
pub use keys::{JwtConfigError, KeyKind, KeyResolver, KeySet, VerifyingKey};
pub use validator::{
    DEFAULT_LEEWAY, DEFAULT_MAX_TOKEN_SIZE, IssuerPolicy, JwtValidator, JwtValidatorBuilder,
    ParsedToken, VerifiedToken,
};
