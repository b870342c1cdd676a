//! The API-key text format `<prefix>_<key id>_<secret>`: generation and cheap parsing.

use std::fmt;

use rand::Rng;
use rand::distr::{Alphanumeric, SampleString};

use super::ApiKeyError;
use crate::credential::Secret;

/// Length of the key id: lowercase hex of 64 random bits.
pub const KEY_ID_LEN: usize = 16;

/// Length of the secret part: base62 characters (`[0-9A-Za-z]`).
///
/// 43 base62 characters carry 43 x log2(62) = 256.03 bits of entropy.
pub const SECRET_LEN: usize = 43;

/// Longest accepted prefix.
pub const MAX_PREFIX_LEN: usize = 16;

/// Class bit of the key-id alphabet (`[0-9a-f]`) in [`CLASSES`].
const HEX: u8 = 1;
/// Class bit of the secret alphabet (`[0-9A-Za-z]`) in [`CLASSES`].
const BASE62: u8 = 2;

/// The alphabets of each byte, so that checking a part is one table load per byte.
const CLASSES: [u8; 256] = {
    let mut table = [0; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        if b.is_ascii_digit() || (b >= b'a' && b <= b'f') {
            table[byte] |= HEX;
        }
        if b.is_ascii_alphanumeric() {
            table[byte] |= BASE62;
        }
        byte += 1;
    }
    table
};

/// Whether every byte of `part` is in the alphabet of `class`. No early exit: the loop has
/// no data-dependent branch.
fn all_in(part: &str, class: u8) -> bool {
    part.bytes()
        .fold(class, |all, b| all & CLASSES[usize::from(b)])
        == class
}

/// The format of API keys issued and accepted by one deployment: `<prefix>_<key id>_<secret>`.
///
/// The prefix is 1 to 16 characters of `[a-z0-9]`, the key id 16 lowercase hex characters
/// and the secret 43 base62 characters. None of the three parts can contain `_`, so splitting
/// on `_` is unambiguous, and a whole key is selected by a double click.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiKeyFormat {
    prefix: Box<str>,
}

impl Default for ApiKeyFormat {
    fn default() -> Self {
        Self {
            prefix: crate::DEFAULT_API_KEY_PREFIX.into(),
        }
    }
}

/// The two parts of a well-formed API key, borrowed from the presented text.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ParsedApiKey<'a> {
    key_id: &'a str,
    secret: &'a str,
}

impl<'a> ParsedApiKey<'a> {
    /// The public key id.
    pub fn key_id(&self) -> &'a str {
        self.key_id
    }

    /// The secret part. Do not log it.
    pub fn secret(&self) -> &'a str {
        self.secret
    }
}

impl fmt::Debug for ParsedApiKey<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ParsedApiKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl ApiKeyFormat {
    /// A format with the given prefix (1 to 16 characters of `[a-z0-9]`).
    pub fn new(prefix: &str) -> Result<Self, ApiKeyError> {
        let valid = !prefix.is_empty()
            && prefix.len() <= MAX_PREFIX_LEN
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        if valid {
            Ok(Self {
                prefix: prefix.into(),
            })
        } else {
            Err(ApiKeyError::InvalidConfig(
                "API-key prefix must be 1 to 16 characters of [a-z0-9]",
            ))
        }
    }

    /// The prefix, without the trailing `_`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Total length of a key in this format.
    pub fn key_len(&self) -> usize {
        self.prefix.len() + 1 + KEY_ID_LEN + 1 + SECRET_LEN
    }

    /// Generates a fresh key id and secret from the thread-local CSPRNG (ChaCha12 seeded by
    /// the operating system) and returns `(key id, secret, full key)`.
    pub fn generate(&self) -> (String, Secret, Secret) {
        let mut rng = rand::rng();
        let key_id = format!("{:016x}", rng.random::<u64>());
        let secret = Alphanumeric.sample_string(&mut rng, SECRET_LEN);
        let full = format!("{}_{key_id}_{secret}", self.prefix);
        (key_id, Secret::new(secret), Secret::new(full))
    }

    /// Splits a presented key into key id and secret, or returns `None` when it is not a
    /// well-formed key of this format. Only the text is looked at: no store, no hashing.
    pub fn parse<'a>(&self, key: &'a str) -> Option<ParsedApiKey<'a>> {
        if key.len() != self.key_len() {
            return None;
        }
        let rest = key.strip_prefix(&*self.prefix)?.strip_prefix('_')?;
        // The length check above makes these byte offsets fall inside `rest`; `get` keeps
        // the split panic-free even on non-ASCII input (which then fails the checks below).
        let key_id = rest.get(..KEY_ID_LEN)?;
        let secret = rest.get(KEY_ID_LEN..)?.strip_prefix('_')?;
        let id_ok = all_in(key_id, HEX);
        let secret_ok = secret.len() == SECRET_LEN && all_in(secret, BASE62);
        (id_ok && secret_ok).then_some(ParsedApiKey { key_id, secret })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back() {
        let format = ApiKeyFormat::default();
        for _ in 0..100 {
            let (id, secret, full) = format.generate();
            assert!(full.expose().starts_with("mcpk_"));
            assert_eq!(full.len(), format.key_len());
            let parsed = format.parse(full.expose()).unwrap();
            assert_eq!(parsed.key_id(), id);
            assert_eq!(parsed.secret(), secret.expose());
        }
    }

    #[test]
    fn secrets_differ_and_carry_256_bits() {
        let format = ApiKeyFormat::default();
        let (_, a, _) = format.generate();
        let (_, b, _) = format.generate();
        assert_ne!(a, b);
        let bits = SECRET_LEN as f64 * 62f64.log2();
        assert!(bits >= 256.0, "{bits}");
    }

    #[test]
    fn rejects_malformed_keys() {
        let format = ApiKeyFormat::default();
        let (_, _, full) = format.generate();
        let good = full.expose();
        let secret_at = format.key_len() - SECRET_LEN;
        let mut cases = vec![
            String::new(),
            "mcpk".to_owned(),
            good.replacen("mcpk_", "mcpx_", 1),
            good.replacen("mcpk_", "mcpk-", 1),
            good[..good.len() - 1].to_owned(),
            format!("{good}a"),
            format!("{}x{}", &good[..secret_at - 1], &good[secret_at..]),
        ];
        let mut upper_id = good.to_owned();
        upper_id.replace_range(5..6, "G");
        cases.push(upper_id);
        let mut underscore_secret = good.to_owned();
        underscore_secret.replace_range(secret_at..secret_at + 1, "_");
        cases.push(underscore_secret);
        let mut dash_secret = good.to_owned();
        dash_secret.replace_range(good.len() - 1.., "-");
        cases.push(dash_secret);
        let mut multibyte = good.to_owned();
        multibyte.replace_range(good.len() - 2.., "é");
        cases.push(multibyte);
        for case in cases {
            assert!(format.parse(&case).is_none(), "{case}");
        }
    }

    #[test]
    fn prefix_validation() {
        assert!(ApiKeyFormat::new("acme2").is_ok());
        for bad in ["", "Acme", "my_key", "a-b", "abcdefghijklmnopq"] {
            assert!(ApiKeyFormat::new(bad).is_err(), "{bad}");
        }
        let format = ApiKeyFormat::new("acme").unwrap();
        let (_, _, key) = format.generate();
        assert!(format.parse(key.expose()).is_some());
        assert!(ApiKeyFormat::default().parse(key.expose()).is_none());
    }

    #[test]
    fn class_table_matches_the_alphabets() {
        for b in 0..=u8::MAX {
            let text = [b];
            let Ok(part) = std::str::from_utf8(&text) else {
                assert_eq!(CLASSES[usize::from(b)], 0, "{b}");
                continue;
            };
            assert_eq!(
                all_in(part, HEX),
                b.is_ascii_digit() || (b'a'..=b'f').contains(&b),
                "{b}"
            );
            assert_eq!(all_in(part, BASE62), b.is_ascii_alphanumeric(), "{b}");
        }
        assert!(all_in("", HEX));
        assert!(!all_in("0123456789abcdeF", HEX));
    }

    #[test]
    fn parsed_debug_hides_the_secret() {
        let format = ApiKeyFormat::default();
        let (_, secret, full) = format.generate();
        let parsed = format.parse(full.expose()).unwrap();
        assert!(!format!("{parsed:?}").contains(secret.expose()));
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC*") {
            let _ = ApiKeyFormat::default().parse(&text);
        }

        #[test]
        fn key_shaped_text_never_panics(text in "mcpk_[0-9a-fA-F_é]{0,20}_[0-9A-Za-z_é-]{0,50}") {
            let parsed = ApiKeyFormat::default().parse(&text);
            if let Some(parsed) = parsed {
                proptest::prop_assert_eq!(parsed.key_id().len(), KEY_ID_LEN);
                proptest::prop_assert_eq!(parsed.secret().len(), SECRET_LEN);
            }
        }

        #[test]
        fn one_changed_byte_is_caught_or_still_well_formed(index in 0usize..64, byte in 0u8..=255) {
            let format = ApiKeyFormat::default();
            let (_, _, key) = format.generate();
            let mut bytes = key.expose().as_bytes().to_vec();
            let index = index % bytes.len();
            bytes[index] = byte;
            if let Ok(text) = String::from_utf8(bytes)
                && let Some(parsed) = format.parse(&text)
            {
                // Only a change that keeps every part in its alphabet parses.
                let id_ok = parsed
                    .key_id()
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
                proptest::prop_assert!(id_ok);
                proptest::prop_assert!(parsed.secret().bytes().all(|b| b.is_ascii_alphanumeric()));
            }
        }
    }
}
