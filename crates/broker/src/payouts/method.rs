//! How an owner wants to be paid: a PayPal account, named by its email
//! address, or a Bitcoin address. Both are checked before they are kept:
//! the email like an account's, the address by its own checksum (bech32 or
//! bech32m for `bc1…`/`tb1…`, base58check for `1…`, `3…`, `m…`, `n…`,
//! `2…`), so a typo is caught when it is typed, not after money is sent.

use serde::Serialize;
use sha2::{Digest, Sha256};

/// Longest address accepted (bech32 addresses are at most 90 characters).
const MAX_ADDRESS: usize = 90;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MethodError {
    #[error("{0}")]
    BadEmail(String),
    #[error("{0:?} is not a Bitcoin address (bc1…, 1… or 3…, checksum included)")]
    BadAddress(String),
    #[error("{0:?} is not a payout method; use paypal or crypto")]
    UnknownKind(String),
}

/// Where an owner's payouts go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "destination", rename_all = "lowercase")]
pub enum PayoutMethod {
    /// PayPal Payouts to this email address.
    Paypal(String),
    /// A Bitcoin address, paid by the operator (export and import).
    Crypto(String),
}

impl PayoutMethod {
    /// Checks `destination` for a method of `kind` (`paypal` or `crypto`).
    pub fn parse(kind: &str, destination: &str) -> Result<Self, MethodError> {
        let destination = destination.trim();
        match kind {
            "paypal" => crate::accounts::normalize_email(destination)
                .map(PayoutMethod::Paypal)
                .map_err(|e| MethodError::BadEmail(e.to_string())),
            "crypto" => {
                let shown: String = destination.chars().take(MAX_ADDRESS + 1).collect();
                if bitcoin_address(destination) {
                    Ok(PayoutMethod::Crypto(destination.to_string()))
                } else {
                    Err(MethodError::BadAddress(shown))
                }
            }
            other => Err(MethodError::UnknownKind(other.chars().take(20).collect())),
        }
    }

    /// `paypal` or `crypto`: also the name of the clearing account paid
    /// money goes to.
    pub fn kind(&self) -> &'static str {
        match self {
            PayoutMethod::Paypal(_) => "paypal",
            PayoutMethod::Crypto(_) => "crypto",
        }
    }

    pub fn destination(&self) -> &str {
        match self {
            PayoutMethod::Paypal(d) | PayoutMethod::Crypto(d) => d,
        }
    }
}

/// Whether `text` is a Bitcoin (or testnet) address with a valid checksum.
pub fn bitcoin_address(text: &str) -> bool {
    if text.is_empty() || text.len() > MAX_ADDRESS || !text.is_ascii() {
        return false;
    }
    let lower = text.to_ascii_lowercase();
    if lower.starts_with("bc1") || lower.starts_with("tb1") {
        // Mixed case is not allowed in bech32.
        return (text == lower || text == text.to_ascii_uppercase()) && segwit(&lower);
    }
    base58check(text)
}

const BECH32_CHARS: &[u8; 32] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";

fn polymod(values: &[u8]) -> u32 {
    const GEN: [u32; 5] = [
        0x3b6a_57b2,
        0x2650_8e6d,
        0x1ea1_19fa,
        0x3d42_33dd,
        0x2a14_62b3,
    ];
    let mut chk: u32 = 1;
    for v in values {
        let top = chk >> 25;
        chk = ((chk & 0x01ff_ffff) << 5) ^ u32::from(*v);
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    chk
}

/// A segwit address: witness version 0 with bech32 and a 20 or 32 byte
/// program, or a later version with bech32m and 2 to 40 bytes.
fn segwit(address: &str) -> bool {
    let Some((hrp, data)) = address.rsplit_once('1') else {
        return false;
    };
    let values: Option<Vec<u8>> = data
        .bytes()
        .map(|c| BECH32_CHARS.iter().position(|x| *x == c).map(|p| p as u8))
        .collect();
    let Some(values) = values else {
        return false;
    };
    if values.len() < 7 {
        return false;
    }
    let mut check: Vec<u8> = hrp.bytes().map(|b| b >> 5).collect();
    check.push(0);
    check.extend(hrp.bytes().map(|b| b & 31));
    check.extend(&values);
    let constant = polymod(&check);
    let version = values[0];
    let program_bits = (values.len() - 7) * 5;
    let program_len = program_bits / 8;
    // Padding must be under 5 bits (the rest of the bits are zero in a
    // valid encoder's output; the checksum covers them).
    let padding_ok = program_bits % 8 < 5;
    match version {
        0 => constant == 1 && padding_ok && (program_len == 20 || program_len == 32),
        1..=16 => constant == 0x2bc8_30a3 && padding_ok && (2..=40).contains(&program_len),
        _ => false,
    }
}

const BASE58_CHARS: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// A legacy address: 25 bytes in base58 (version, 20-byte hash, 4-byte
/// checksum) with a known version byte.
fn base58check(address: &str) -> bool {
    if !(26..=35).contains(&address.len()) {
        return false;
    }
    let mut bytes = [0u8; 25];
    for c in address.bytes() {
        let Some(digit) = BASE58_CHARS.iter().position(|x| *x == c) else {
            return false;
        };
        let mut carry = digit as u32;
        for b in bytes.iter_mut().rev() {
            carry += u32::from(*b) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        if carry != 0 {
            return false;
        }
    }
    let leading_ones = address.bytes().take_while(|c| *c == b'1').count();
    let leading_zeros = bytes.iter().take_while(|b| **b == 0).count();
    if leading_ones != leading_zeros {
        return false;
    }
    let digest = Sha256::digest(Sha256::digest(&bytes[..21]));
    digest[..4] == bytes[21..] && matches!(bytes[0], 0x00 | 0x05 | 0x6f | 0xc4)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_addresses_pass_and_typos_do_not() {
        for good in [
            "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
            "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4",
            "bc1p5d7rjq7g6rdk2yhzks9smlaqtedr4dekq08ge8ztwac72sfr9rusxg3297",
            "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",
            "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
        ] {
            assert!(bitcoin_address(good), "{good}");
        }
        for bad in [
            "",
            "bc1qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdr",
            "bc1Qar0srrr7xfkvy5l643lydnw9re59gtzzwf5mdq",
            "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3",
            "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNL0",
            "0x52908400098527886E0F7030069857D2E4169EE7",
            "not an address",
            &"1".repeat(200),
        ] {
            assert!(!bitcoin_address(bad), "{bad}");
        }
    }

    #[test]
    fn methods_are_checked_and_bounded() {
        assert_eq!(
            PayoutMethod::parse("paypal", " Owner@Example.org "),
            Ok(PayoutMethod::Paypal("owner@example.org".into()))
        );
        assert!(PayoutMethod::parse("paypal", "nobody").is_err());
        assert!(PayoutMethod::parse("crypto", "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2").is_ok());
        let long = "x".repeat(10_000);
        match PayoutMethod::parse("crypto", &long) {
            Err(MethodError::BadAddress(shown)) => assert!(shown.len() <= MAX_ADDRESS + 1),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            PayoutMethod::parse("iban", "x"),
            Err(MethodError::UnknownKind(_))
        ));
    }
}
