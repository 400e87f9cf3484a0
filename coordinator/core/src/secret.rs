//! Secrets in the node model: BMC passwords and ramdisk agent tokens are the product-wide
//! [`Secret`] (never printed; see the `secret` crate), and this module mints agent tokens.

pub use ::secret::{MASK, Secret};

/// A fresh ramdisk agent token from 32 caller-supplied random bytes (this crate does
/// no IO, so the caller draws them from the OS RNG). Encoded as 64 lowercase hex
/// characters, which is safe in `parameters.txt` and in HTTP headers.
pub fn new_agent_token(random: [u8; 32]) -> Secret {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(64);
    for b in random {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    Secret::new(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_hex() {
        let t = new_agent_token([0xab; 32]);
        assert_eq!(t.expose().len(), 64);
        assert!(t.expose().chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(new_agent_token([1; 32]), new_agent_token([2; 32]));
    }
}
