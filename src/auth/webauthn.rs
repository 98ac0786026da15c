//! The WebAuthn relying party: ceremony options and the verification of their answers, by
//! webauthn-rs-core (Kanidm's relying-party core; no CBOR or COSE is parsed here).
//!
//! Passkeys as the contract has them: discoverable credentials (`residentKey` = `required`), user
//! verification required, ES256 and EdDSA, attestation `none`. The high-level `webauthn-rs` crate
//! fixes the algorithms to ES256/RS256 and asks for no resident key, so the core's builders are
//! used with exactly these settings.

use std::time::Duration;

use serde_json::Value;
use url::Url;
use webauthn_rs_core::error::WebauthnError;
use webauthn_rs_core::proto::{
    AttestationConveyancePreference, AuthenticationState, COSEAlgorithm, Credential,
    PublicKeyCredential, RegisterPublicKeyCredential, RegistrationState, UserVerificationPolicy,
};
use webauthn_rs_core::WebauthnCore;

use crate::config::Origin;

/// How long a ceremony's options are good for (the browser's timeout and the challenge's life).
pub const CEREMONY_SECS: u64 = 300;

/// The relying party: `webauthn.rp_id`, `webauthn.rp_name`, `webauthn.origins`.
pub struct RelyingParty {
    core: WebauthnCore,
}

/// Why an answer was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// A valid signature whose counter did not grow: possibly a cloned authenticator.
    #[error("the signature counter did not grow")]
    CounterWentBack,
    /// Anything else: not JSON of the right shape, wrong challenge, origin, rp id hash, type or
    /// algorithm, no user verification, a bad signature.
    #[error("{0}")]
    Invalid(String),
}

impl From<WebauthnError> for Refused {
    fn from(e: WebauthnError) -> Self {
        match e {
            WebauthnError::CredentialPossibleCompromise => Refused::CounterWentBack,
            other => Refused::Invalid(other.to_string()),
        }
    }
}

/// A sign-in answer, parsed: which credential it names and the user handle it carries.
pub struct Assertion {
    credential: PublicKeyCredential,
}

impl Assertion {
    /// Reads `PublicKeyCredential` JSON (the WebAuthn JSON serialisation).
    pub fn parse(json: Value) -> Result<Self, Refused> {
        let credential = serde_json::from_value(json)
            .map_err(|e| Refused::Invalid(format!("not an assertion: {e}")))?;
        Ok(Self { credential })
    }

    pub fn credential_id(&self) -> &[u8] {
        self.credential.get_credential_id()
    }

    pub fn user_handle(&self) -> Option<&[u8]> {
        self.credential.get_user_unique_id()
    }
}

impl RelyingParty {
    pub fn new(rp_id: &str, rp_name: &str, origins: &[Origin]) -> anyhow::Result<Self> {
        let origins = origins
            .iter()
            .map(|o| Url::parse(o.as_str()))
            .collect::<Result<Vec<_>, _>>()?;
        let core = WebauthnCore::new_unsafe_experts_only(
            rp_name,
            rp_id,
            origins,
            Duration::from_secs(CEREMONY_SECS),
            Some(false),
            Some(false),
        );
        Ok(Self { core })
    }

    /// Registration options for the user known to authenticators as `handle` (the
    /// `PublicKeyCredentialCreationOptionsJSON`), excluding the credentials in `exclude`, and the
    /// state to finish it with.
    pub fn start_registration(
        &self,
        handle: &[u8],
        name: &str,
        display_name: &str,
        exclude: Vec<Vec<u8>>,
    ) -> anyhow::Result<(Value, RegistrationState)> {
        let exclude = (!exclude.is_empty()).then(|| exclude.into_iter().map(Into::into).collect());
        let builder = self
            .core
            .new_challenge_register_builder(handle, name, display_name)?
            .attestation(AttestationConveyancePreference::None)
            .credential_algorithms(vec![COSEAlgorithm::ES256, COSEAlgorithm::EDDSA])
            .require_resident_key(true)
            .authenticator_attachment(None)
            .user_verification_policy(UserVerificationPolicy::Required)
            .reject_synchronised_authenticators(false)
            .exclude_credentials(exclude)
            .extensions(None);
        let (options, state) = self.core.generate_challenge_register(builder)?;
        Ok((options_json(&options.public_key)?, state))
    }

    /// Verifies a registration answer (`RegistrationResponseJSON`) against its state.
    pub fn finish_registration(
        &self,
        answer: Value,
        state: &RegistrationState,
    ) -> Result<Credential, Refused> {
        let answer: RegisterPublicKeyCredential = serde_json::from_value(answer)
            .map_err(|e| Refused::Invalid(format!("not a registration answer: {e}")))?;
        Ok(self.core.register_credential(&answer, state, None)?)
    }

    /// Sign-in options for a discoverable credential (no `allowCredentials`), and the state.
    pub fn start_sign_in(&self) -> anyhow::Result<(Value, AuthenticationState)> {
        let builder = self
            .core
            .new_challenge_authenticate_builder(Vec::new(), Some(UserVerificationPolicy::Required))?
            .extensions(None)
            .allow_backup_eligible_upgrade(true);
        let (options, state) = self.core.generate_challenge_authenticate(builder)?;
        Ok((options_json(&options.public_key)?, state))
    }

    /// Verifies a sign-in answer against its state and the stored credential it names (user
    /// verification is required by the state's policy); the credential as it is to be stored now
    /// (its counter and backup state).
    pub fn finish_sign_in(
        &self,
        assertion: &Assertion,
        mut state: AuthenticationState,
        mut stored: Credential,
    ) -> Result<Credential, Refused> {
        state.set_allowed_credentials(vec![stored.clone()]);
        let result = self
            .core
            .authenticate_credential(&assertion.credential, &state)?;
        stored.counter = result.counter();
        stored.backup_state = result.backup_state();
        stored.backup_eligible = result.backup_eligible();
        Ok(stored)
    }
}

/// Options as the WebAuthn JSON serialisation has them: members that are not set are absent, not
/// `null` (`PublicKeyCredential.parseCreationOptionsFromJSON` refuses a `null` list).
fn options_json(options: &impl serde::Serialize) -> anyhow::Result<Value> {
    fn strip(v: &mut Value) {
        match v {
            Value::Object(map) => {
                map.retain(|_, v| !v.is_null());
                map.values_mut().for_each(strip);
            }
            Value::Array(items) => items.iter_mut().for_each(strip),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(options)?;
    strip(&mut v);
    Ok(v)
}
