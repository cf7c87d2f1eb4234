//! Who may call the Flight SQL port: the [`Gated`] service in front of every call refuses
//! calls once shutdown began and, with users configured, checks `Authorization: Basic`
//! against the PostgreSQL port's users (off the async threads, slowed per address after
//! failures, a verified password remembered for a minute by its hash) or a bearer token a
//! Handshake gave out (in memory, expiring). The first authenticated call of a connection
//! takes its `max_connections` slot.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::alphabet;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tokio_util::sync::CancellationToken;
use tonic::body::Body;
use tonic::codegen::http;
use tonic::metadata::MetadataMap;
use tonic::server::NamedService;
use tonic::{Status, codegen::Service};
use tracing::debug;

use super::conn::ConnInfo;
use crate::locks::Unpoisoned;
use crate::server::Admission;
use crate::server::pgwire::auth::Users;
use crate::sql::access::Role;

/// A token unused for this long is forgotten; the client logs in again.
const TOKEN_IDLE_LIFETIME: Duration = Duration::from_secs(8 * 60 * 60);
/// Tokens kept at most; past it the one unused the longest goes.
const MAX_TOKENS: usize = 10_000;
/// How long a verified user and password are taken without checking them again.
const VERIFIED_LIFETIME: Duration = Duration::from_secs(60);
/// Verified credentials remembered at most.
const MAX_VERIFIED: usize = 10_000;

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

impl Caller {
    /// The user name (empty for [`Caller::Anyone`]).
    pub fn user(&self) -> &str {
        match self {
            Caller::Anyone => "",
            Caller::Password(u) | Caller::Token(u) => u,
        }
    }
}

/// The users and the bearer tokens handed out to them.
pub struct Auth {
    users: Arc<Users>,
    tokens: Mutex<HashMap<String, Session>>,
    /// HMAC-SHA256 of user and password under `key` → when they were verified.
    verified: Mutex<HashMap<[u8; 32], Instant>>,
    key: [u8; 32],
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
            verified: Mutex::new(HashMap::new()),
            key: rand::random(),
        }
    }

    /// The hash credentials are remembered by (never the password itself).
    fn fingerprint(&self, user: &str, password: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("any key length");
        mac.update(user.as_bytes());
        mac.update(&[0]);
        mac.update(password.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// Check a user's password: remembered for a minute once verified; otherwise, after
    /// the wait the address's failures call for, PBKDF2 on a blocking thread.
    async fn check_basic(
        &self,
        user: String,
        password: String,
        ip: Option<IpAddr>,
        logins: &crate::server::guard::LoginGuard,
    ) -> Result<Caller, Status> {
        let fingerprint = self.fingerprint(&user, &password);
        if self
            .verified
            .locked()
            .get(&fingerprint)
            .is_some_and(|at| at.elapsed() < VERIFIED_LIFETIME)
        {
            return Ok(Caller::Password(user));
        }
        if let Some(ip) = ip {
            logins.wait(ip).await;
        }
        let users = Arc::clone(&self.users);
        let name = user.clone();
        let right = tokio::task::spawn_blocking(move || users.check_password(&name, &password))
            .await
            .map_err(|_| Status::internal("the password check failed"))?;
        if right {
            if let Some(ip) = ip {
                logins.succeeded(ip);
            }
            let mut verified = self.verified.locked();
            if verified.len() >= MAX_VERIFIED {
                verified.retain(|_, at| at.elapsed() < VERIFIED_LIFETIME);
                if verified.len() >= MAX_VERIFIED {
                    verified.clear();
                }
            }
            verified.insert(fingerprint, Instant::now());
            Ok(Caller::Password(user))
        } else {
            if let Some(ip) = ip {
                logins.failed(ip, "Flight SQL", &user);
            }
            Err(Status::unauthenticated(format!(
                "password authentication failed for user \"{user}\" [SQLSTATE 28P01]"
            )))
        }
    }

    /// The caller of a request, from its `authorization` header; `ip` is the client's
    /// address, whose failed logins slow its next ones.
    pub async fn check(
        &self,
        metadata: &MetadataMap,
        ip: Option<IpAddr>,
        logins: &crate::server::guard::LoginGuard,
    ) -> Result<Caller, Status> {
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
            self.check_basic(user, password, ip, logins).await
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

/// What every Flight call passes before the service: shutdown, credentials, and the
/// connection's `max_connections` slot.
pub struct Gate {
    pub shutdown: CancellationToken,
    pub auth: Option<Arc<Auth>>,
    pub admission: Admission,
    pub max_connections: usize,
}

impl Gate {
    async fn admit(&self, request: &mut http::Request<Body>) -> Result<(), Status> {
        if self.shutdown.is_cancelled() {
            return Err(Status::unavailable(
                "the server is shutting down [SQLSTATE 57P01]",
            ));
        }
        let conn = request.extensions().get::<ConnInfo>().cloned();
        let ip = conn.as_ref().map(|c| c.state.peer.ip());
        let caller = match &self.auth {
            None => Caller::Anyone,
            Some(auth) => {
                let metadata = MetadataMap::from_headers(request.headers().clone());
                auth.check(&metadata, ip, &self.admission.logins)
                    .await
                    .inspect_err(|e| {
                        debug!(
                            "Flight SQL authentication from {} failed: {}",
                            ip.map(|a| a.to_string()).unwrap_or_else(|| "?".into()),
                            e.message()
                        );
                    })?
            }
        };
        if let Some(conn) = conn
            && !conn
                .state
                .authenticated(&self.admission, self.max_connections)
        {
            return Err(Status::resource_exhausted(
                "sorry, too many clients already (max_connections) [SQLSTATE 53300]",
            ));
        }
        let role = match (&caller, &self.auth) {
            (Caller::Password(user) | Caller::Token(user), Some(auth)) => auth.users.role(user),
            _ => Role::Admin,
        };
        request.extensions_mut().insert(role);
        request.extensions_mut().insert(caller);
        Ok(())
    }
}

/// The Flight service behind its [`Gate`].
#[derive(Clone)]
pub struct Gated<S> {
    pub inner: S,
    pub gate: Arc<Gate>,
}

impl<S: NamedService> NamedService for Gated<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for Gated<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<Body>) -> Self::Future {
        // The clone that was made ready serves this call; a fresh one waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let gate = Arc::clone(&self.gate);
        Box::pin(async move {
            match gate.admit(&mut request).await {
                Ok(()) => inner.call(request).await,
                Err(status) => Ok(status.into_http()),
            }
        })
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

    #[tokio::test]
    async fn basic_and_bearer_credentials() {
        let a = auth();
        let logins = crate::server::guard::LoginGuard::default();
        let ip: IpAddr = "10.1.1.1".parse().unwrap();
        let check = |m: MetadataMap| {
            let (a, logins) = (&a, &logins);
            async move { a.check(&m, Some(ip), logins).await }
        };
        let basic = |s: &str| header(&format!("Basic {}", URL_SAFE_NO_PAD.encode(s)));
        assert_eq!(
            check(basic("alice:Al1ce pw")).await.unwrap(),
            Caller::Password("alice".into())
        );
        // Padded base64 too.
        let padded = base64::engine::general_purpose::STANDARD.encode("alice:Al1ce pw");
        assert!(check(header(&format!("basic {padded}"))).await.is_ok());
        let wrong = check(basic("alice:nope")).await.unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::Unauthenticated);
        assert!(
            wrong
                .message()
                .contains("password authentication failed for user \"alice\"")
        );
        assert!(check(basic("bob:Al1ce pw")).await.is_err());
        assert_eq!(logins.failures(ip), 2);
        assert!(check(MetadataMap::new()).await.is_err());
        assert!(check(header("Basic !!!")).await.is_err());

        let token = a.issue("alice");
        assert_eq!(
            check(header(&format!("Bearer {token}"))).await.unwrap(),
            Caller::Token("alice".into())
        );
        assert!(check(header("Bearer made-up")).await.is_err());
        assert!(check(header("Digest x")).await.is_err());
        // A verified password is remembered (by its hash): no wait, no PBKDF2.
        assert_eq!(a.verified.locked().len(), 1);
    }
}
