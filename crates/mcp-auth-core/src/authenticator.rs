//! The [`Authenticator`] trait and [`AuthChain`], which picks an authenticator by credential kind.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use http::request::Parts;

use crate::credential::{Credential, CredentialExtractor, CredentialKind};
use crate::error::AuthError;
use crate::principal::Principal;

/// Turns a credential into a [`Principal`].
///
/// Small on purpose: implement it for a custom identity source in an afternoon.
#[async_trait]
pub trait Authenticator: Send + Sync {
    /// Whether this authenticator handles credentials of `kind`.
    fn accepts(&self, kind: CredentialKind) -> bool;

    /// Verifies `credential` and returns who presented it.
    async fn authenticate(&self, credential: &Credential) -> Result<Principal, AuthError>;
}

#[async_trait]
impl<A: Authenticator + ?Sized> Authenticator for Arc<A> {
    fn accepts(&self, kind: CredentialKind) -> bool {
        (**self).accepts(kind)
    }

    async fn authenticate(&self, credential: &Credential) -> Result<Principal, AuthError> {
        (**self).authenticate(credential).await
    }
}

#[async_trait]
impl<A: Authenticator + ?Sized> Authenticator for Box<A> {
    fn accepts(&self, kind: CredentialKind) -> bool {
        (**self).accepts(kind)
    }

    async fn authenticate(&self, credential: &Credential) -> Result<Principal, AuthError> {
        (**self).authenticate(credential).await
    }
}

/// A first-match chain of authenticators: the first one that accepts the credential's kind
/// decides. A rejection is final; the chain does not try the next authenticator, so a bad
/// token cannot be retried against a weaker verifier.
#[derive(Clone, Default)]
pub struct AuthChain {
    authenticators: Vec<Arc<dyn Authenticator>>,
}

impl fmt::Debug for AuthChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthChain")
            .field("authenticators", &self.authenticators.len())
            .finish()
    }
}

impl AuthChain {
    /// An empty chain: it rejects every credential.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an authenticator.
    pub fn with(mut self, authenticator: impl Authenticator + 'static) -> Self {
        self.authenticators.push(Arc::new(authenticator));
        self
    }

    /// Appends a shared authenticator.
    pub fn with_shared(mut self, authenticator: Arc<dyn Authenticator>) -> Self {
        self.authenticators.push(authenticator);
        self
    }

    /// Authenticates the credential in a request, as found by `extractor`.
    ///
    /// A request without credentials fails with [`AuthError::Missing`].
    pub async fn authenticate_parts(
        &self,
        parts: &Parts,
        extractor: &CredentialExtractor,
    ) -> Result<Principal, AuthError> {
        let credential = extractor.extract(parts)?.ok_or(AuthError::Missing)?;
        self.authenticate(&credential).await
    }
}

#[async_trait]
impl Authenticator for AuthChain {
    fn accepts(&self, kind: CredentialKind) -> bool {
        self.authenticators.iter().any(|a| a.accepts(kind))
    }

    async fn authenticate(&self, credential: &Credential) -> Result<Principal, AuthError> {
        let kind = credential.kind();
        match self.authenticators.iter().find(|a| a.accepts(kind)) {
            Some(authenticator) => authenticator.authenticate(credential).await,
            None => Err(AuthError::NotAccepted),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credential::Secret;
    use crate::principal::AuthMethod;

    struct Fixed(CredentialKind, &'static str);

    #[async_trait]
    impl Authenticator for Fixed {
        fn accepts(&self, kind: CredentialKind) -> bool {
            kind == self.0
        }
        async fn authenticate(&self, credential: &Credential) -> Result<Principal, AuthError> {
            if credential.secret().expose() == "good" {
                Ok(Principal::builder(self.1, AuthMethod::Local).build())
            } else {
                Err(AuthError::InvalidApiKey)
            }
        }
    }

    #[tokio::test]
    async fn picks_by_kind_and_rejection_is_final() {
        let chain = AuthChain::new()
            .with(Fixed(CredentialKind::Bearer, "jwt-user"))
            .with(Fixed(CredentialKind::ApiKey, "key-user"))
            .with(Fixed(CredentialKind::ApiKey, "never"));
        let p = chain
            .authenticate(&Credential::ApiKey(Secret::new("good")))
            .await
            .unwrap();
        assert_eq!(p.subject(), "key-user");
        let p = chain
            .authenticate(&Credential::Bearer(Secret::new("good")))
            .await
            .unwrap();
        assert_eq!(p.subject(), "jwt-user");
        assert!(
            chain
                .authenticate(&Credential::ApiKey(Secret::new("bad")))
                .await
                .is_err()
        );
        let empty = AuthChain::new();
        assert!(matches!(
            empty
                .authenticate(&Credential::Bearer(Secret::new("good")))
                .await,
            Err(AuthError::NotAccepted)
        ));
    }

    #[tokio::test]
    async fn parts_without_credentials_are_missing() {
        let chain = AuthChain::new().with(Fixed(CredentialKind::Bearer, "u"));
        let (parts, ()) = http::Request::new(()).into_parts();
        assert!(matches!(
            chain
                .authenticate_parts(&parts, &CredentialExtractor::new())
                .await,
            Err(AuthError::Missing)
        ));
    }
}
