//! Who may connect: the users and their SCRAM-SHA-256 verifiers (from `auth_users_file` and
//! `auth_password`, plain passwords hashed at load and never kept), and the server side of
//! one connection's SCRAM-SHA-256 exchange (RFC 5802 / RFC 7677, as PostgreSQL speaks it).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{Result, WeirError};
use crate::sql::access::Role;

/// The SASL mechanism offered to clients.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

/// Iterations of the verifiers Weir makes itself, as PostgreSQL's default.
const ITERATIONS: u32 = 4096;

/// What the server stores for a password: PostgreSQL's
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64 fields).
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: Vec<u8>,
    server_key: Vec<u8>,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Verifier(SCRAM-SHA-256)")
    }
}

impl Verifier {
    /// Parse a verifier in PostgreSQL's format (`pg_authid.rolpassword`).
    pub fn parse(text: &str) -> std::result::Result<Verifier, String> {
        let bad = |what: &str| {
            format!(
                "not a SCRAM-SHA-256 verifier ({what}); expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"
            )
        };
        let rest = text
            .strip_prefix("SCRAM-SHA-256$")
            .ok_or_else(|| bad("prefix"))?;
        let (params, keys) = rest.split_once('$').ok_or_else(|| bad("missing '$'"))?;
        let (iterations, salt) = params
            .split_once(':')
            .ok_or_else(|| bad("missing ':' after the iterations"))?;
        let (stored_key, server_key) = keys
            .split_once(':')
            .ok_or_else(|| bad("missing ':' between the keys"))?;
        let iterations: u32 = iterations
            .parse()
            .ok()
            .filter(|&i| i > 0)
            .ok_or_else(|| bad("iterations"))?;
        let decode = |s: &str, what: &str| B64.decode(s).map_err(|_| bad(what));
        let salt = decode(salt, "salt")?;
        let stored_key = decode(stored_key, "StoredKey")?;
        let server_key = decode(server_key, "ServerKey")?;
        if salt.is_empty() || stored_key.len() != 32 || server_key.len() != 32 {
            return Err(bad("field lengths"));
        }
        Ok(Verifier {
            iterations,
            salt,
            stored_key,
            server_key,
        })
    }

    /// Does `password` match this verifier? The client side of SCRAM computed here:
    /// SaltedPassword = PBKDF2-HMAC-SHA256(SASLprep(password), salt, iterations),
    /// ClientKey = HMAC(SaltedPassword, "Client Key"), and SHA-256(ClientKey) compared in
    /// constant time with the StoredKey. For fronts that receive the password itself
    /// (Flight SQL's basic authentication).
    pub fn check_password(&self, password: &str) -> bool {
        let salted = pbkdf2_sha256(&normalize(password), &self.salt, self.iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key = Sha256::digest(&client_key);
        stored_key.as_slice().ct_eq(&self.stored_key).into()
    }

    /// Hash a plain password (SASLprep, random salt, 4096 iterations), as PostgreSQL's
    /// `password_encryption = scram-sha-256` does.
    pub fn from_password(password: &str) -> Verifier {
        Self::parse(&postgres_protocol::password::scram_sha_256(
            password.as_bytes(),
        ))
        .expect("postgres-protocol makes PostgreSQL verifiers")
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(&self.stored_key),
            B64.encode(&self.server_key)
        )
    }
}

fn hmac(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}

/// SASLprep, as PostgreSQL and postgres-protocol apply it before hashing; a password
/// SASLprep refuses is used as it is, as they do.
fn normalize(password: &str) -> Vec<u8> {
    match stringprep::saslprep(password) {
        Ok(p) => p.into_owned().into_bytes(),
        Err(_) => password.as_bytes().to_vec(),
    }
}

/// PBKDF2-HMAC-SHA256 with one block of output (32 bytes, SCRAM-SHA-256's SaltedPassword).
fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> Vec<u8> {
    let mac = Hmac::<Sha256>::new_from_slice(password).expect("HMAC takes keys of any length");
    let mut block = mac.clone();
    block.update(salt);
    block.update(&1u32.to_be_bytes());
    let mut u = block.finalize().into_bytes();
    let mut out = u;
    for _ in 1..iterations {
        let mut next = mac.clone();
        next.update(&u);
        u = next.finalize().into_bytes();
        for (o, b) in out.iter_mut().zip(u.iter()) {
            *o ^= b;
        }
    }
    out.to_vec()
}

/// The users who may connect, with their verifiers.
pub struct Users {
    by_name: HashMap<String, Verifier>,
    /// The role of each user of the file (`admin` unless its line says `reader`).
    roles: HashMap<String, Role>,
    /// `auth_password`: the verifier of every user not in the file.
    any: Option<Verifier>,
    /// Makes a stable fake salt for names nobody has, so that an unknown user goes
    /// through the same exchange as a wrong password.
    mock_secret: [u8; 32],
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Users")
            .field("users", &self.by_name.len())
            .field("any_user_password", &self.any.is_some())
            .finish()
    }
}

impl Users {
    /// The users of `file` (lines `user:password` or `user:SCRAM-SHA-256$…`; blank lines and
    /// `#` comments skipped) and `password` for any other user name. `None` when neither
    /// is given: no authentication.
    pub fn load(file: Option<&Path>, password: Option<&str>) -> Result<Option<Users>> {
        if file.is_none() && password.is_none() {
            return Ok(None);
        }
        let mut by_name = HashMap::new();
        let mut roles = HashMap::new();
        if let Some(path) = file {
            let text = std::fs::read_to_string(path).map_err(|e| {
                WeirError::Config(format!(
                    "cannot read auth_users_file {}: {e}",
                    path.display()
                ))
            })?;
            for (user, (verifier, role)) in Self::parse_file(&text).map_err(|(line, msg)| {
                WeirError::Config(format!("auth_users_file {}:{line}: {msg}", path.display()))
            })? {
                roles.insert(user.clone(), role);
                by_name.insert(user, verifier);
            }
        }
        let any = match password {
            Some("") => {
                return Err(WeirError::Config(
                    "auth_password is empty; set a password or leave it out".into(),
                ));
            }
            Some(p) => Some(
                Self::secret(p).map_err(|e| WeirError::Config(format!("auth_password: {e}")))?,
            ),
            None => None,
        };
        Ok(Some(Users {
            by_name,
            roles,
            any,
            mock_secret: rand::random(),
        }))
    }

    /// A plain password or a verifier.
    fn secret(text: &str) -> std::result::Result<Verifier, String> {
        if text.starts_with("SCRAM-SHA-256$") {
            Verifier::parse(text)
        } else {
            Ok(Verifier::from_password(text))
        }
    }

    /// Errors carry the 1-based line and never the line's text (it holds a password).
    /// A line may end with `:admin` or `:reader`, the user's role (`admin` when left out).
    #[allow(clippy::type_complexity)]
    fn parse_file(
        text: &str,
    ) -> std::result::Result<HashMap<String, (Verifier, Role)>, (usize, String)> {
        let mut users = HashMap::new();
        for (i, line) in text.lines().enumerate() {
            let n = i + 1;
            let line = line.trim_end_matches('\r');
            if line.trim().is_empty() || line.trim_start().starts_with('#') {
                continue;
            }
            let Some((user, secret)) = line.split_once(':') else {
                return Err((
                    n,
                    "expected user:password[:role] or user:SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>[:role]"
                        .into(),
                ));
            };
            let user = user.trim();
            if user.is_empty() {
                return Err((n, "empty user name".into()));
            }
            let (secret, role) = match secret.rsplit_once(':') {
                Some((secret, role)) if Role::parse(role).is_some() && !secret.is_empty() => {
                    (secret, Role::parse(role).expect("checked"))
                }
                _ => (secret, Role::Admin),
            };
            if secret.is_empty() {
                return Err((n, format!("empty password for user \"{user}\"")));
            }
            let verifier = Self::secret(secret).map_err(|e| (n, e))?;
            if users.insert(user.to_string(), (verifier, role)).is_some() {
                return Err((n, format!("user \"{user}\" is listed twice")));
            }
        }
        Ok(users)
    }

    /// The role of a user who logged in: the file's, or `admin` for a user that only
    /// `auth_password` lets in.
    pub fn role(&self, user: &str) -> Role {
        self.roles.get(user).copied().unwrap_or(Role::Admin)
    }

    /// How many users the file names.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Is there no user in the file (only `auth_password`, if anything)?
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// The verifier of `user`, or `None` for a user nobody declared.
    fn verifier(&self, user: &str) -> Option<&Verifier> {
        self.by_name.get(user).or(self.any.as_ref())
    }

    /// Does `user` log in with `password`? An unknown user costs the same work as a wrong
    /// password and is refused the same way.
    pub fn check_password(&self, user: &str, password: &str) -> bool {
        match self.verifier(user) {
            Some(v) => v.check_password(password),
            None => {
                let _ = self.mock(user).check_password(password);
                false
            }
        }
    }

    /// A made-up verifier for an unknown user: its salt is the same at every attempt, and
    /// no password matches it.
    fn mock(&self, user: &str) -> Verifier {
        let salt = hmac(&self.mock_secret, user.as_bytes())[..16].to_vec();
        Verifier {
            iterations: ITERATIONS,
            salt,
            stored_key: rand::random::<[u8; 32]>().to_vec(),
            server_key: rand::random::<[u8; 32]>().to_vec(),
        }
    }
}

/// Why an exchange ended without letting the client in.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Wrong password or unknown user: `28P01`.
    Failed,
    /// A message that is not SCRAM as PostgreSQL speaks it: `08P01`, with the reason.
    Protocol(String),
}

/// One connection's SCRAM exchange, between the server-first and the client-final
/// message.
pub struct Exchange {
    verifier: Verifier,
    known: bool,
    gs2_header: String,
    nonce: String,
    client_first_bare: String,
    server_first: String,
}

impl Exchange {
    /// Read the client-first message (`n,,n=…,r=<nonce>`) for `user` (the start-up packet's
    /// user; like PostgreSQL, the name inside the SCRAM message is ignored). Returns the
    /// server-first message and the exchange waiting for the client's proof.
    pub fn start(
        users: &Users,
        user: &str,
        client_first: &[u8],
    ) -> std::result::Result<(String, Exchange), Refusal> {
        let text = std::str::from_utf8(client_first)
            .map_err(|_| Refusal::Protocol("SCRAM client-first message is not UTF-8".into()))?;
        let malformed =
            || Refusal::Protocol(format!("malformed SCRAM client-first message: {text:?}"));
        // gs2-header: cbind-flag "," [authzid] ","
        let (flag, rest) = text.split_once(',').ok_or_else(malformed)?;
        let (authzid, bare) = rest.split_once(',').ok_or_else(malformed)?;
        match flag {
            // "y": the client could bind to the channel but thinks the server cannot;
            // true, since SCRAM-SHA-256-PLUS is not offered.
            "n" | "y" => {}
            f if f.starts_with("p=") => {
                return Err(Refusal::Protocol(
                    "SCRAM channel binding was requested, but this server does not offer SCRAM-SHA-256-PLUS".into(),
                ));
            }
            _ => return Err(malformed()),
        }
        if !authzid.is_empty() {
            return Err(Refusal::Protocol(
                "SCRAM authorization identities are not supported".into(),
            ));
        }
        let mut attrs = bare.split(',');
        let name = attrs.next().ok_or_else(malformed)?;
        if !name.starts_with("n=") {
            return Err(malformed());
        }
        let client_nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b','))
            .ok_or_else(malformed)?;
        let (verifier, known) = match users.verifier(user) {
            Some(v) => (v.clone(), true),
            None => (users.mock(user), false),
        };
        let nonce = format!("{client_nonce}{}", B64.encode(rand::random::<[u8; 18]>()));
        let server_first = format!(
            "r={nonce},s={},i={}",
            B64.encode(&verifier.salt),
            verifier.iterations
        );
        Ok((
            server_first.clone(),
            Exchange {
                verifier,
                known,
                gs2_header: format!("{flag},{authzid},"),
                nonce,
                client_first_bare: bare.to_string(),
                server_first,
            },
        ))
    }

    /// Check the client-final message (`c=…,r=…,p=<proof>`); on success, the server-final
    /// message (`v=<ServerSignature>`) that proves the server knew the verifier.
    pub fn finish(self, client_final: &[u8]) -> std::result::Result<String, Refusal> {
        let text = std::str::from_utf8(client_final)
            .map_err(|_| Refusal::Protocol("SCRAM client-final message is not UTF-8".into()))?;
        let malformed = || Refusal::Protocol("malformed SCRAM client-final message".into());
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or_else(malformed)?;
        let mut attrs = without_proof.split(',');
        let binding = attrs
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or_else(malformed)?;
        let nonce = attrs
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .ok_or_else(malformed)?;
        if B64.decode(binding).ok().as_deref() != Some(self.gs2_header.as_bytes()) {
            return Err(Refusal::Protocol(
                "SCRAM channel binding does not match the client-first message".into(),
            ));
        }
        if nonce != self.nonce {
            return Err(Refusal::Protocol(
                "SCRAM nonce does not match the server's".into(),
            ));
        }
        let proof = B64.decode(proof).map_err(|_| malformed())?;
        if proof.len() != 32 {
            return Err(malformed());
        }
        let auth_message = format!(
            "{},{},{}",
            self.client_first_bare, self.server_first, without_proof
        );
        let signature = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(p, s)| p ^ s).collect();
        let stored_key = Sha256::digest(&client_key);
        let matches: bool = stored_key
            .as_slice()
            .ct_eq(&self.verifier.stored_key)
            .into();
        if !(matches && self.known) {
            return Err(Refusal::Failed);
        }
        let server_signature = hmac(&self.verifier.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    use super::*;

    fn users(file: &str) -> Users {
        let parsed = Users::parse_file(file).unwrap();
        Users {
            roles: parsed.iter().map(|(u, (_, r))| (u.clone(), *r)).collect(),
            by_name: parsed.into_iter().map(|(u, (v, _))| (u, v)).collect(),
            any: None,
            mock_secret: [7; 32],
        }
    }

    /// Log in with postgres-protocol's SCRAM client, which also checks the server's
    /// final signature.
    fn login(users: &Users, user: &str, password: &str) -> std::result::Result<String, Refusal> {
        let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
        let (server_first, exchange) = Exchange::start(users, user, client.message())?;
        client.update(server_first.as_bytes()).unwrap();
        let server_final = exchange.finish(client.message())?;
        client
            .finish(server_final.as_bytes())
            .expect("the server's signature verifies");
        Ok(server_final)
    }

    #[test]
    fn lines_may_end_with_a_role() {
        let u = users("ann:pw1\nbob:pw2:reader\ncid:pw3:admin\ndee:a:b:c\n");
        assert_eq!(u.role("ann"), Role::Admin);
        assert_eq!(u.role("bob"), Role::Reader);
        assert_eq!(u.role("cid"), Role::Admin);
        assert!(login(&u, "bob", "pw2").is_ok());
        assert!(login(&u, "bob", "pw2:reader").is_err());
        // A password with colons that do not end in a role stays whole.
        assert!(login(&u, "dee", "a:b:c").is_ok());
        let verifier = Verifier::from_password("s3cret").to_string();
        let u = users(&format!("eve:{verifier}:reader\n"));
        assert_eq!(u.role("eve"), Role::Reader);
        assert!(login(&u, "eve", "s3cret").is_ok());
    }

    #[test]
    fn plain_passwords_and_postgres_verifiers_log_in() {
        let made = postgres_protocol::password::scram_sha_256(b"s3cret");
        let u = users(&format!("# comment\nalice:pa:ss\n\nbob:{made}\n"));
        assert!(login(&u, "alice", "pa:ss").unwrap().starts_with("v="));
        assert!(login(&u, "bob", "s3cret").is_ok());
        assert_eq!(login(&u, "alice", "wrong"), Err(Refusal::Failed));
        assert_eq!(login(&u, "bob", "pa:ss"), Err(Refusal::Failed));
        assert_eq!(login(&u, "carol", "pa:ss"), Err(Refusal::Failed));
    }

    #[test]
    fn plain_passwords_check_against_verifiers() {
        // A verifier made by postgres-protocol (as PostgreSQL makes them), one made here,
        // and a password that SASLprep changes (a soft hyphen is mapped to nothing).
        let made = postgres_protocol::password::scram_sha_256("I\u{00AD}X".as_bytes());
        let u = users(&format!("alice:pa:ss\nbob:{made}\n"));
        assert!(u.check_password("alice", "pa:ss"));
        assert!(!u.check_password("alice", "pa:sS"));
        assert!(u.check_password("bob", "IX"));
        assert!(u.check_password("bob", "I\u{00AD}X"));
        assert!(!u.check_password("bob", "I X"));
        assert!(!u.check_password("carol", "pa:ss"));
        let v = Verifier::from_password("s3cret");
        assert!(v.check_password("s3cret"));
        assert!(!v.check_password(""));
        // RFC 7677's test vector: user "user", password "pencil", 4096 iterations.
        let rfc = Verifier::parse(
            "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
        )
        .unwrap();
        assert!(rfc.check_password("pencil"));
        assert!(!rfc.check_password("pencil "));
    }

    #[test]
    fn unknown_users_get_a_stable_salt() {
        let u = users("alice:x\n");
        let first = |user| Exchange::start(&u, user, b"n,,n=,r=abc").unwrap().0;
        let salt = |s: String| s.split(',').nth(1).unwrap().to_string();
        assert_eq!(salt(first("nobody")), salt(first("nobody")));
        assert_ne!(salt(first("nobody")), salt(first("somebody")));
    }

    #[test]
    fn verifiers_round_trip_in_postgres_format() {
        let v = Verifier::from_password("pw");
        assert_eq!(Verifier::parse(&v.to_string()).unwrap(), v);
        assert!(v.to_string().starts_with("SCRAM-SHA-256$4096:"));
        assert!(Verifier::parse("SCRAM-SHA-256$4096:abc").is_err());
        assert!(format!("{v:?}").find("SCRAM-SHA-256$").is_none());
    }

    #[test]
    fn bad_lines_name_their_number_not_their_text() {
        let err = Users::parse_file("a:1\nsecretline\n").err().unwrap();
        assert_eq!(err.0, 2);
        assert!(!err.1.contains("secretline"));
        assert_eq!(Users::parse_file("a:1\na:2\n").err().unwrap().0, 2);
        assert_eq!(Users::parse_file("a:\n").err().unwrap().0, 1);
        assert!(Users::parse_file("a:SCRAM-SHA-256$x").is_err());
    }

    #[test]
    fn tampered_messages_are_protocol_errors() {
        let u = users("alice:x\n");
        let (_, ex) = Exchange::start(&u, "alice", b"n,,n=,r=abc").unwrap();
        assert!(matches!(
            ex.finish(b"c=biws,r=other,p=AAAA"),
            Err(Refusal::Protocol(_))
        ));
        assert!(matches!(
            Exchange::start(&u, "alice", b"p=tls-server-end-point,,n=,r=abc"),
            Err(Refusal::Protocol(_))
        ));
        assert!(matches!(
            Exchange::start(&u, "alice", b"garbage"),
            Err(Refusal::Protocol(_))
        ));
    }
}
