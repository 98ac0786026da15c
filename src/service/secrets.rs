//! Secrets at rest: re-sealing every stored secret with a new `auth.data_key`
//! (`users-service rotate-data-key`).

use crate::repo::db::Db;
use anyhow::Context;

use crate::auth::data_key::DataKey;
use crate::repo;

/// What a rotation re-sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotated {
    pub signing_keys: usize,
    pub totp_secrets: usize,
}

/// Opens every stored secret with `old` (or as stored, for values sealed with no key) and seals it
/// with `new` (none: stored as they are), in one transaction: all of them move, or none.
pub async fn rotate_data_key(db: &Db, old: &DataKey, new: &DataKey) -> anyhow::Result<Rotated> {
    let mut tx = db.begin().await?;
    let keys = repo::signing_keys::all_for_update(&mut tx).await?;
    for key in &keys {
        let place = repo::signing_keys::place(&key.kid);
        let plain = old
            .open(&key.private_der, key.key_id.as_deref(), &place)
            .with_context(|| {
                format!(
                    "the signing key {} does not open with the current auth.data_key",
                    key.kid
                )
            })?;
        let sealed = new.seal(&plain, &place)?;
        let resealed = repo::signing_keys::StoredKey {
            kid: key.kid.clone(),
            private_der: sealed.bytes,
            key_id: sealed.key_id,
        };
        repo::signing_keys::set_sealed(&mut tx, &resealed).await?;
    }
    let factors = repo::mfa::all_secrets_for_update(&mut tx).await?;
    for factor in &factors {
        let place = super::mfa::secret_place(factor.user_id);
        let plain = old
            .open(&factor.secret, factor.key_id.as_deref(), &place)
            .with_context(|| {
                format!(
                    "the TOTP secret of user {} does not open with the current auth.data_key",
                    factor.user_id
                )
            })?;
        let sealed = new.seal(&plain, &place)?;
        repo::mfa::set_secret(
            &mut *tx,
            factor.user_id,
            &sealed.bytes,
            sealed.key_id.as_deref(),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(Rotated {
        signing_keys: keys.len(),
        totp_secrets: factors.len(),
    })
}
