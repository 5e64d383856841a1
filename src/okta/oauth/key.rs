//! The service app's private key (PEM or JWK, ES256 or RS256) and compact JWS signing.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::rsa::{KeyPairComponents, PublicKeyComponents};
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair,
};
use serde_json::{Map, Value, json};

/// Why a private key cannot be used. Never carries key material: only its shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Neither a PEM block nor a JSON Web Key.
    #[error("the private key is neither PEM nor a JSON Web Key")]
    NotPemOrJwk,
    /// A PEM block of a kind that cannot be used.
    #[error(
        "PEM block {0:?} is not supported; use \"PRIVATE KEY\" (PKCS#8, RSA or P-256) or \"RSA PRIVATE KEY\""
    )]
    UnsupportedPem(String),
    /// A JWK that is not an RSA or P-256 private key.
    #[error("unsupported JSON Web Key: {0}")]
    UnsupportedJwk(&'static str),
    /// The crypto library rejected the key (wrong encoding, too small, not a private key).
    #[error("the private key was rejected: {0}")]
    Rejected(String),
    /// Signing failed.
    #[error("cannot sign with the private key")]
    Sign,
}

/// JWS algorithms the client signs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    /// ECDSA P-256 with SHA-256.
    Es256,
    /// RSASSA-PKCS1-v1_5 with SHA-256.
    Rs256,
}

impl Alg {
    /// The JOSE `alg` name.
    pub fn as_str(self) -> &'static str {
        match self {
            Alg::Es256 => "ES256",
            Alg::Rs256 => "RS256",
        }
    }
}

enum Pair {
    Ec(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// A private signing key. `Debug` shows only the algorithm: the key itself cannot reach logs,
/// status or error messages through formatting.
pub struct PrivateKey {
    pair: Pair,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, <redacted>)", self.alg().as_str())
    }
}

fn rejected(e: ring::error::KeyRejected) -> KeyError {
    // ring's descriptions are fixed words such as "InvalidEncoding", never key bytes.
    KeyError::Rejected(e.to_string())
}

fn b64url(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn jwk_bytes(jwk: &Map<String, Value>, name: &'static str) -> Result<Vec<u8>, KeyError> {
    jwk.get(name)
        .and_then(Value::as_str)
        .and_then(|s| URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok())
        .ok_or(KeyError::UnsupportedJwk(
            "a member is missing or not base64url",
        ))
}

impl PrivateKey {
    /// Parses a PEM (`PRIVATE KEY` in PKCS#8, or `RSA PRIVATE KEY`) or a private JWK
    /// (`kty` `EC` with `crv` `P-256`, or `RSA` with its CRT members).
    pub fn parse(text: &str) -> Result<PrivateKey, KeyError> {
        let text = text.trim();
        if text.starts_with('{') {
            let jwk: Map<String, Value> =
                serde_json::from_str(text).map_err(|_| KeyError::NotPemOrJwk)?;
            return PrivateKey::from_jwk(&jwk);
        }
        let (label, der) = pem_block(text)?;
        match label.as_str() {
            "PRIVATE KEY" => PrivateKey::from_pkcs8(&der),
            "RSA PRIVATE KEY" => Ok(PrivateKey {
                pair: Pair::Rsa(RsaKeyPair::from_der(&der).map_err(rejected)?),
            }),
            _ => Err(KeyError::UnsupportedPem(label)),
        }
    }

    /// A PKCS#8 document holding a P-256 or an RSA key.
    pub fn from_pkcs8(der: &[u8]) -> Result<PrivateKey, KeyError> {
        let rng = SystemRandom::new();
        match EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng) {
            Ok(pair) => Ok(PrivateKey {
                pair: Pair::Ec(pair),
            }),
            Err(ec) => match RsaKeyPair::from_pkcs8(der) {
                Ok(pair) => Ok(PrivateKey {
                    pair: Pair::Rsa(pair),
                }),
                // Report the EC complaint for EC documents, the RSA one otherwise.
                Err(rsa) if ec.to_string() == "WrongAlgorithm" => Err(rejected(rsa)),
                Err(_) => Err(rejected(ec)),
            },
        }
    }

    fn from_jwk(jwk: &Map<String, Value>) -> Result<PrivateKey, KeyError> {
        match jwk.get("kty").and_then(Value::as_str) {
            Some("EC") => {
                if jwk.get("crv").and_then(Value::as_str) != Some("P-256") {
                    return Err(KeyError::UnsupportedJwk(
                        "only the EC curve P-256 is supported",
                    ));
                }
                let mut public = vec![4u8];
                public.extend(jwk_bytes(jwk, "x")?);
                public.extend(jwk_bytes(jwk, "y")?);
                let d = jwk.contains_key("d").then(|| jwk_bytes(jwk, "d")).ok_or(
                    KeyError::UnsupportedJwk("a public key; the private member d is missing"),
                )??;
                let pair = EcdsaKeyPair::from_private_key_and_public_key(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    &d,
                    &public,
                    &SystemRandom::new(),
                )
                .map_err(rejected)?;
                Ok(PrivateKey {
                    pair: Pair::Ec(pair),
                })
            }
            Some("RSA") => {
                if !jwk.contains_key("d") {
                    return Err(KeyError::UnsupportedJwk(
                        "a public key; the private member d is missing",
                    ));
                }
                let components = KeyPairComponents {
                    public_key: PublicKeyComponents {
                        n: jwk_bytes(jwk, "n")?,
                        e: jwk_bytes(jwk, "e")?,
                    },
                    d: jwk_bytes(jwk, "d")?,
                    p: jwk_bytes(jwk, "p")?,
                    q: jwk_bytes(jwk, "q")?,
                    dP: jwk_bytes(jwk, "dp")?,
                    dQ: jwk_bytes(jwk, "dq")?,
                    qInv: jwk_bytes(jwk, "qi")?,
                };
                Ok(PrivateKey {
                    pair: Pair::Rsa(RsaKeyPair::from_components(&components).map_err(rejected)?),
                })
            }
            _ => Err(KeyError::UnsupportedJwk("kty must be EC or RSA")),
        }
    }

    /// A fresh P-256 key, with its PKCS#8 PEM (what `openssl genpkey` writes). Cheap; used
    /// for DPoP proofs and by tests.
    pub fn generate_es256() -> (PrivateKey, String) {
        let rng = SystemRandom::new();
        // Generation only fails when the system has no randomness, which nothing survives.
        let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("the system random source works");
        let key = PrivateKey::from_pkcs8(doc.as_ref()).expect("ring reads its own PKCS#8");
        (key, pem("PRIVATE KEY", doc.as_ref()))
    }

    /// The algorithm this key signs with.
    pub fn alg(&self) -> Alg {
        match self.pair {
            Pair::Ec(_) => Alg::Es256,
            Pair::Rsa(_) => Alg::Rs256,
        }
    }

    /// The public half as a JWK (no `kid`, no private members).
    pub fn public_jwk(&self) -> Value {
        match &self.pair {
            Pair::Ec(pair) => {
                let point = pair.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-256", "x": b64url(&point[1..33]), "y": b64url(&point[33..65])})
            }
            Pair::Rsa(pair) => {
                let c: PublicKeyComponents<Vec<u8>> = pair.public().into();
                json!({"kty": "RSA", "n": b64url(&c.n), "e": b64url(&c.e)})
            }
        }
    }

    /// A compact JWS of `claims` with `alg` and the extra header members `header`.
    pub fn sign_jwt(
        &self,
        mut header: Map<String, Value>,
        claims: &Value,
    ) -> Result<String, KeyError> {
        header.insert("alg".into(), self.alg().as_str().into());
        let input = format!(
            "{}.{}",
            b64url(Value::Object(header).to_string().as_bytes()),
            b64url(claims.to_string().as_bytes())
        );
        let rng = SystemRandom::new();
        let signature = match &self.pair {
            Pair::Ec(pair) => pair
                .sign(&rng, input.as_bytes())
                .map_err(|_| KeyError::Sign)?
                .as_ref()
                .to_vec(),
            Pair::Rsa(pair) => {
                let mut sig = vec![0; pair.public().modulus_len()];
                pair.sign(&RSA_PKCS1_SHA256, &rng, input.as_bytes(), &mut sig)
                    .map_err(|_| KeyError::Sign)?;
                sig
            }
        };
        Ok(format!("{input}.{}", b64url(&signature)))
    }
}

/// The label and bytes of the first PEM block in `text`.
fn pem_block(text: &str) -> Result<(String, Vec<u8>), KeyError> {
    let begin = text.find("-----BEGIN ").ok_or(KeyError::NotPemOrJwk)?;
    let rest = &text[begin + 11..];
    let label_end = rest.find("-----").ok_or(KeyError::NotPemOrJwk)?;
    let label = rest[..label_end].to_owned();
    let body = &rest[label_end + 5..];
    let end = body
        .find(&format!("-----END {label}-----"))
        .ok_or(KeyError::NotPemOrJwk)?;
    let b64: String = body[..end].chars().filter(|c| !c.is_whitespace()).collect();
    let der = STANDARD.decode(b64).map_err(|_| KeyError::NotPemOrJwk)?;
    Ok((label, der))
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn es256_pem_round_trips_and_debug_is_redacted() {
        let (key, pem_text) = PrivateKey::generate_es256();
        let again = PrivateKey::parse(&pem_text).unwrap();
        assert_eq!(key.public_jwk(), again.public_jwk());
        assert_eq!(format!("{key:?}"), "PrivateKey(ES256, <redacted>)");
        let jwt = key.sign_jwt(Map::new(), &json!({"a": 1})).unwrap();
        assert_eq!(jwt.split('.').count(), 3);
    }

    #[test]
    fn bad_keys_name_the_problem_not_the_key() {
        assert_eq!(
            PrivateKey::parse("hello").unwrap_err(),
            KeyError::NotPemOrJwk
        );
        let sec1 = "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----";
        assert_eq!(
            PrivateKey::parse(sec1).unwrap_err(),
            KeyError::UnsupportedPem("EC PRIVATE KEY".into())
        );
        let garbage = "-----BEGIN PRIVATE KEY-----\nU0VDUkVUU0VDUkVU\n-----END PRIVATE KEY-----";
        let err = PrivateKey::parse(garbage).unwrap_err();
        assert!(matches!(err, KeyError::Rejected(_)), "{err:?}");
        assert!(!err.to_string().contains("U0VDUkVU"));
        let public = r#"{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}"#;
        assert!(matches!(
            PrivateKey::parse(public),
            Err(KeyError::UnsupportedJwk(_))
        ));
    }
}
