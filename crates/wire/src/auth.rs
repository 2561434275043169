//! The handshake: the server sends a random nonce; the client answers with
//! HMAC-SHA256(secret, nonce, client name); the server checks it and
//! answers with its own proof over the same nonce, so each side knows the
//! other holds the cluster secret. The secret itself never crosses the wire.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// A cluster secret shorter than this is refused at start.
pub const MIN_SECRET_BYTES: usize = 16;

/// HMAC over the parts; None only if the key were refused, which HMAC
/// (any key length) never does.
fn mac(secret: &[u8], parts: &[&str]) -> Option<HmacSha256> {
    let mut m = <HmacSha256 as Mac>::new_from_slice(secret).ok()?;
    for p in parts {
        m.update(p.as_bytes());
        m.update(b"\n");
    }
    Some(m)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// A fresh nonce (32 random bytes, hex).
pub fn nonce() -> String {
    let mut b = [0u8; 32];
    if getrandom::fill(&mut b).is_err() {
        // Without an OS entropy source, time and pid still make it unique.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        b[..16].copy_from_slice(&t.to_le_bytes());
        b[16..20].copy_from_slice(&std::process::id().to_le_bytes());
    }
    hex(&b)
}

pub fn client_proof(secret: &[u8], nonce: &str, client: &str) -> String {
    mac(secret, &["client", nonce, client])
        .map(|m| hex(&m.finalize().into_bytes()))
        .unwrap_or_default()
}

pub fn server_proof(secret: &[u8], nonce: &str, client: &str) -> String {
    mac(secret, &["server", nonce, client])
        .map(|m| hex(&m.finalize().into_bytes()))
        .unwrap_or_default()
}

fn check(m: Option<HmacSha256>, proof: &str) -> bool {
    let Some(m) = m else { return false };
    match unhex(proof) {
        // Constant-time comparison.
        Some(bytes) => m.verify_slice(&bytes).is_ok(),
        None => false,
    }
}

pub fn check_client(secret: &[u8], nonce: &str, client: &str, proof: &str) -> bool {
    check(mac(secret, &["client", nonce, client]), proof)
}

pub fn check_server(secret: &[u8], nonce: &str, client: &str, proof: &str) -> bool {
    check(mac(secret, &["server", nonce, client]), proof)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_check_only_with_the_same_secret_nonce_and_name() {
        let n = nonce();
        let p = client_proof(b"0123456789abcdef", &n, "chat1");
        assert!(check_client(b"0123456789abcdef", &n, "chat1", &p));
        assert!(!check_client(b"0123456789abcdeX", &n, "chat1", &p));
        assert!(!check_client(b"0123456789abcdef", &nonce(), "chat1", &p));
        assert!(!check_client(b"0123456789abcdef", &n, "chat2", &p));
        assert!(!check_client(b"0123456789abcdef", &n, "chat1", "zz"));
        // A client proof is not a server proof.
        assert!(!check_server(b"0123456789abcdef", &n, "chat1", &p));
    }
}
