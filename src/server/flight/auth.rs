//! Who may call the Flight SQL port: the [`Gate`] every call passes refuses calls once
//! shutdown began and, with users configured, checks `Authorization: Basic` against the
//! PostgreSQL port's users or a bearer token a Handshake gave out (in memory, expiring).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use tokio_util::sync::CancellationToken;
use tonic::metadata::MetadataMap;
use tonic::service::Interceptor;
use tonic::{Request, Status};
use tracing::warn;

use crate::locks::Unpoisoned;
use crate::server::pgwire::auth::Users;
use crate::sql::access::Role;

/// A token unused for this long is forgotten; the client logs in again.
const TOKEN_IDLE_LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);
/// Tokens kept at most; past it the one unused the longest goes.
const MAX_TOKENS: usize = 10_000;

/// Basic credentials are base64 with or without padding (Go's Flight client sends none).
const BASIC: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Who made a call, as the gate found it (a request extension).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No users are configured: anyone on loopback.
    Anyone,
    /// A user who sent a right password with this call.
    Password(String),
    /// A user who sent a token a Handshake gave out.
    Token(String),
}

/// The users and the bearer tokens handed out to them.
pub struct Auth {
    users: Arc<Users>,
    tokens: Mutex<HashMap<String, Session>>,
}

struct Session {
    user: String,
    last_used: Instant,
}

impl Auth {
    pub fn new(users: Arc<Users>) -> Self {
        Auth {
            users,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// The caller of a request, from its `authorization` header.
    pub fn check(&self, metadata: &MetadataMap) -> Result<Caller, Status> {
        let Some(value) = metadata.get("authorization") else {
            return Err(Status::unauthenticated(
                "authentication required: send a user name and password (Authorization: Basic) or the token the Handshake returned (Authorization: Bearer) [SQLSTATE 28000]",
            ));
        };
        let value = value
            .to_str()
            .map_err(|_| Status::unauthenticated("the authorization header is not text"))?;
        let (scheme, credentials) = value.split_once(' ').unwrap_or((value, ""));
        let credentials = credentials.trim();
        if scheme.eq_ignore_ascii_case("basic") {
            let (user, password) = BASIC
                .decode(credentials)
                .ok()
                .and_then(|raw| String::from_utf8(raw).ok())
                .and_then(|text| {
                    text.split_once(':')
                        .map(|(u, p)| (u.to_string(), p.to_string()))
                })
                .ok_or_else(|| {
                    Status::unauthenticated(
                        "malformed Basic credentials: expected base64 of user:password",
                    )
                })?;
            if self.users.check_password(&user, &password) {
                Ok(Caller::Password(user))
            } else {
                Err(Status::unauthenticated(format!(
                    "password authentication failed for user \"{user}\" [SQLSTATE 28P01]"
                )))
            }
        } else if scheme.eq_ignore_ascii_case("bearer") {
            let mut tokens = self.tokens.locked();
            let now = Instant::now();
            match tokens.get_mut(credentials) {
                Some(s) if now.duration_since(s.last_used) < TOKEN_IDLE_LIFETIME => {
                    s.last_used = now;
                    Ok(Caller::Token(s.user.clone()))
                }
                Some(_) => {
                    tokens.remove(credentials);
                    Err(Status::unauthenticated(
                        "the bearer token has expired; log in again with a user name and password [SQLSTATE 28000]",
                    ))
                }
                None => Err(Status::unauthenticated(
                    "unknown bearer token; log in again with a user name and password [SQLSTATE 28000]",
                )),
            }
        } else {
            Err(Status::unauthenticated(format!(
                "unsupported authorization scheme \"{scheme}\": use Basic or Bearer [SQLSTATE 28000]"
            )))
        }
    }

    /// A new random token for `user`.
    pub fn issue(&self, user: &str) -> String {
        let token = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>());
        let mut tokens = self.tokens.locked();
        let now = Instant::now();
        tokens.retain(|_, s| now.duration_since(s.last_used) < TOKEN_IDLE_LIFETIME);
        if tokens.len() >= MAX_TOKENS
            && let Some(oldest) = tokens
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(t, _)| t.clone())
        {
            tokens.remove(&oldest);
        }
        tokens.insert(
            token.clone(),
            Session {
                user: user.to_string(),
                last_used: now,
            },
        );
        token
    }
}

/// The interceptor in front of every Flight call.
#[derive(Clone)]
pub struct Gate {
    pub shutdown: CancellationToken,
    pub auth: Option<Arc<Auth>>,
}

impl Interceptor for Gate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if self.shutdown.is_cancelled() {
            return Err(Status::unavailable(
                "the server is shutting down [SQLSTATE 57P01]",
            ));
        }
        let caller = match &self.auth {
            None => Caller::Anyone,
            Some(auth) => auth.check(request.metadata()).inspect_err(|e| {
                let peer = request
                    .remote_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_else(|| "?".into());
                warn!(
                    "Flight SQL authentication from {peer} failed: {}",
                    e.message()
                );
            })?,
        };
        let role = match (&caller, &self.auth) {
            (Caller::Password(user) | Caller::Token(user), Some(auth)) => auth.users.role(user),
            _ => Role::Admin,
        };
        request.extensions_mut().insert(role);
        request.extensions_mut().insert(caller);
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("users");
        std::fs::write(&file, "alice:Al1ce pw\n").unwrap();
        Auth::new(Arc::new(
            Users::load(Some(&file), None).unwrap().expect("users"),
        ))
    }

    fn header(value: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert("authorization", value.parse().unwrap());
        m
    }

    #[test]
    fn basic_and_bearer_credentials() {
        let a = auth();
        let basic = |s: &str| header(&format!("Basic {}", URL_SAFE_NO_PAD.encode(s)));
        assert_eq!(
            a.check(&basic("alice:Al1ce pw")).unwrap(),
            Caller::Password("alice".into())
        );
        // Padded base64 too.
        let padded = base64::engine::general_purpose::STANDARD.encode("alice:Al1ce pw");
        assert!(a.check(&header(&format!("basic {padded}"))).is_ok());
        let wrong = a.check(&basic("alice:nope")).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        assert!(
            wrong
                .message()
                .contains("password authentication failed for user \"alice\"")
        );
        assert!(a.check(&basic("bob:Al1ce pw")).is_err());
        assert!(a.check(&MetadataMap::new()).is_err());
        assert!(a.check(&header("Basic !!!")).is_err());

        let token = a.issue("alice");
        assert_eq!(
            a.check(&header(&format!("Bearer {token}"))).unwrap(),
            Caller::Token("alice".into())
        );
        assert!(a.check(&header("Bearer made-up")).is_err());
        assert!(a.check(&header("Digest x")).is_err());
    }
}
