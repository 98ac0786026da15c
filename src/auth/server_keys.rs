//! Named API keys for the server routes. Keys are compared as SHA-256 digests in constant time,
//! against every configured key, so neither the key's length nor its position leaks.

use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::ServerKey;

#[derive(Clone)]
pub struct ServerKeys(Vec<(String, [u8; 32])>);

impl ServerKeys {
    pub fn new(keys: &[ServerKey]) -> Self {
        Self(
            keys.iter()
                .map(|k| {
                    (
                        k.name.clone(),
                        Sha256::digest(k.key.expose_secret().as_bytes()).into(),
                    )
                })
                .collect(),
        )
    }

    /// The name of the key that matches, if any.
    pub fn authenticate(&self, presented: &str) -> Option<&str> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for (name, key) in &self.0 {
            if bool::from(key.ct_eq(&digest)) {
                found = Some(name.as_str());
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::SecretString;

    #[test]
    fn finds_the_matching_key_only() {
        let keys = ServerKeys::new(&[
            ServerKey {
                name: "billing".into(),
                key: SecretString::from("k1-0123456789abcdef"),
            },
            ServerKey {
                name: "crm".into(),
                key: SecretString::from("k2-0123456789abcdef"),
            },
        ]);
        assert_eq!(keys.authenticate("k2-0123456789abcdef"), Some("crm"));
        assert_eq!(keys.authenticate("k2-0123456789abcde"), None);
        assert_eq!(keys.authenticate(""), None);
    }
}
