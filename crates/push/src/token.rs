//! Tokens and ids: generation from the OS's CSPRNG, hashing, constant-time checks.

use base64::Engine as _;
use heartbeat_core::Secret;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

/// SHA-256 of a token: what is stored and indexed, never the token itself.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct TokenHash(pub [u8; 32]);

impl std::fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenHash(<redacted>)")
    }
}

impl TokenHash {
    pub fn of(token: &str) -> TokenHash {
        TokenHash(Sha256::digest(token.as_bytes()).into())
    }

    pub fn ct_eq(&self, other: &TokenHash) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

fn random<const N: usize>() -> Result<[u8; N], getrandom::Error> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes)?;
    Ok(bytes)
}

/// A fresh 256-bit token, base64url (43 characters).
pub fn new_token() -> Result<Secret, getrandom::Error> {
    Ok(Secret::new(
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random::<32>()?),
    ))
}

/// A random (version 4) UUID in its usual text form.
pub fn new_uuid() -> Result<String, getrandom::Error> {
    let mut b = random::<16>()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tokens_are_long_random_and_valid() {
        let a = new_token().unwrap();
        let b = new_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.expose().len(), 43);
        heartbeat_config::validate_token(a.expose()).unwrap();
        assert!(TokenHash::of(a.expose()).ct_eq(&TokenHash::of(a.expose())));
        assert!(!TokenHash::of(a.expose()).ct_eq(&TokenHash::of(b.expose())));
    }

    #[test]
    fn uuids_have_the_v4_shape() {
        let u = new_uuid().unwrap();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!("89ab".contains(&u[19..20]));
    }
}
