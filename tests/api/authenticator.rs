//! A software authenticator for the passkey tests: real keys (P-256, Ed25519, and P-384 for an
//! algorithm the service does not accept), real CBOR and real signatures, answering the service's
//! options in the WebAuthn JSON serialisation as a browser would.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use openssl::bn::{BigNum, BigNumContext};
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rand::rand_bytes;
use openssl::sign::Signer;
use serde_cbor_2::Value as Cbor;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

const UP: u8 = 0x01;
const UV: u8 = 0x04;
const AT: u8 = 0x40;

#[derive(Clone, Copy, Debug)]
pub enum Alg {
    Es256,
    EdDsa,
    /// ES384 on P-384: a real key the service did not offer
    Es384,
}

pub struct Authenticator {
    alg: Alg,
    key: PKey<Private>,
    pub credential_id: Vec<u8>,
    /// the signature counter; 0 keeps it off (as synced passkeys do)
    pub counter: u32,
    counting: bool,
    /// the user handle stored at registration
    pub user_handle: Vec<u8>,
    pub origin: String,
    /// set the user-verified flag (a real passkey always does)
    pub verify_user: bool,
    /// sign for this rp id instead of the one the options name
    pub rp_id_override: Option<String>,
}

pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn unb64(s: &str) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).unwrap()
}

impl Authenticator {
    pub fn new(alg: Alg, origin: &str) -> Self {
        let key = match alg {
            Alg::Es256 => ec_key(Nid::X9_62_PRIME256V1),
            Alg::Es384 => ec_key(Nid::SECP384R1),
            Alg::EdDsa => PKey::generate_ed25519().unwrap(),
        };
        let mut credential_id = vec![0u8; 32];
        rand_bytes(&mut credential_id).unwrap();
        Self {
            alg,
            key,
            credential_id,
            counter: 0,
            counting: false,
            user_handle: Vec::new(),
            origin: origin.to_owned(),
            verify_user: true,
            rp_id_override: None,
        }
    }

    /// Counts signatures (a hardware key): each assertion raises the counter by one.
    pub fn counting(mut self) -> Self {
        self.counting = true;
        self
    }

    /// `navigator.credentials.create()` on these `PublicKeyCredentialCreationOptionsJSON`.
    pub fn register(&mut self, options: &Value) -> Value {
        let rp_id = self.rp_id(options["rp"]["id"].as_str().unwrap());
        self.user_handle = unb64(options["user"]["id"].as_str().unwrap());
        let client_data =
            self.client_data("webauthn.create", options["challenge"].as_str().unwrap());
        let mut auth_data = Sha256::digest(rp_id.as_bytes()).to_vec();
        auth_data.push(UP | AT | if self.verify_user { UV } else { 0 });
        auth_data.extend_from_slice(&self.counter.to_be_bytes());
        auth_data.extend_from_slice(&[0u8; 16]); // AAGUID
        auth_data.extend_from_slice(&(self.credential_id.len() as u16).to_be_bytes());
        auth_data.extend_from_slice(&self.credential_id);
        auth_data.extend_from_slice(&serde_cbor_2::to_vec(&self.cose_key()).unwrap());
        let attestation = cbor_map(vec![
            (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
            (Cbor::Text("attStmt".into()), Cbor::Map(BTreeMap::new())),
            (Cbor::Text("authData".into()), Cbor::Bytes(auth_data)),
        ]);
        json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64(&client_data),
                "attestationObject": b64(&serde_cbor_2::to_vec(&attestation).unwrap()),
                "transports": ["internal"],
            },
            "clientExtensionResults": {},
        })
    }

    /// `navigator.credentials.get()` on these `PublicKeyCredentialRequestOptionsJSON`.
    pub fn assert(&mut self, options: &Value) -> Value {
        if self.counting {
            self.counter += 1;
        }
        let rp_id = self.rp_id(options["rpId"].as_str().unwrap());
        let client_data = self.client_data("webauthn.get", options["challenge"].as_str().unwrap());
        let mut auth_data = Sha256::digest(rp_id.as_bytes()).to_vec();
        auth_data.push(UP | if self.verify_user { UV } else { 0 });
        auth_data.extend_from_slice(&self.counter.to_be_bytes());
        let mut signed = auth_data.clone();
        signed.extend_from_slice(&Sha256::digest(&client_data));
        let signature = self.sign(&signed);
        json!({
            "id": b64(&self.credential_id),
            "rawId": b64(&self.credential_id),
            "type": "public-key",
            "response": {
                "clientDataJSON": b64(&client_data),
                "authenticatorData": b64(&auth_data),
                "signature": b64(&signature),
                "userHandle": b64(&self.user_handle),
            },
            "clientExtensionResults": {},
        })
    }

    fn rp_id(&self, asked: &str) -> String {
        self.rp_id_override
            .clone()
            .unwrap_or_else(|| asked.to_owned())
    }

    fn client_data(&self, kind: &str, challenge: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "type": kind,
            "challenge": challenge,
            "origin": self.origin,
            "crossOrigin": false,
        }))
        .unwrap()
    }

    fn sign(&self, data: &[u8]) -> Vec<u8> {
        match self.alg {
            Alg::Es256 => {
                let mut signer = Signer::new(MessageDigest::sha256(), &self.key).unwrap();
                signer.update(data).unwrap();
                signer.sign_to_vec().unwrap()
            }
            Alg::Es384 => {
                let mut signer = Signer::new(MessageDigest::sha384(), &self.key).unwrap();
                signer.update(data).unwrap();
                signer.sign_to_vec().unwrap()
            }
            Alg::EdDsa => {
                let mut signer = Signer::new_without_digest(&self.key).unwrap();
                signer.sign_oneshot_to_vec(data).unwrap()
            }
        }
    }

    /// The public key as a COSE_Key.
    fn cose_key(&self) -> Cbor {
        let int = |i: i128| Cbor::Integer(i);
        match self.alg {
            Alg::Es256 | Alg::Es384 => {
                let ec = self.key.ec_key().unwrap();
                let (crv, alg, size) = match self.alg {
                    Alg::Es256 => (1, -7, 32),
                    _ => (2, -35, 48),
                };
                let mut ctx = BigNumContext::new().unwrap();
                let (mut x, mut y) = (BigNum::new().unwrap(), BigNum::new().unwrap());
                ec.public_key()
                    .affine_coordinates(ec.group(), &mut x, &mut y, &mut ctx)
                    .unwrap();
                cbor_map(vec![
                    (int(1), int(2)),
                    (int(3), int(alg)),
                    (int(-1), int(crv)),
                    (int(-2), Cbor::Bytes(x.to_vec_padded(size).unwrap())),
                    (int(-3), Cbor::Bytes(y.to_vec_padded(size).unwrap())),
                ])
            }
            Alg::EdDsa => cbor_map(vec![
                (int(1), int(1)),
                (int(3), int(-8)),
                (int(-1), int(6)),
                (int(-2), Cbor::Bytes(self.key.raw_public_key().unwrap())),
            ]),
        }
    }
}

fn ec_key(curve: Nid) -> PKey<Private> {
    let group = EcGroup::from_curve_name(curve).unwrap();
    PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
}

fn cbor_map(entries: Vec<(Cbor, Cbor)>) -> Cbor {
    Cbor::Map(entries.into_iter().collect())
}
