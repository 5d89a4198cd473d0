//! Basic auth on the request path (`auth-type: basic`, INGRESS-NGINX.md §C3).
//!
//! Password hashes are slow on purpose (bcrypt: tens of milliseconds and more per check),
//! so three things keep them from costing the proxy its CPU:
//! - a successful check is remembered (bounded, for [`VERIFIED_FOR`]), keyed by a SHA-256 of
//!   a per-process secret, the user table's digest and the credentials: a valid client pays
//!   one check, not one per request, and a changed Secret invalidates what it remembered;
//! - every check that has to be made counts against the client address's budget
//!   ([`ATTEMPTS_PER_SECOND`], burst [`ATTEMPTS_BURST`]): past it, 429 without a check;
//! - expensive checks run off the event loop, at most [`Authenticator::parallel`] at once;
//!   waiting longer than [`QUEUE_WAIT`] for a turn is a 503.
//!
//! Whatever goes wrong, the request is not let through.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lc_rs::digest;
use base64::Engine as _;
use governor::clock::MonotonicClock;
use governor::middleware::NoOpMiddleware;
use governor::{Quota, RateLimiter};
use http::header::AUTHORIZATION;
use http::{HeaderMap, HeaderValue};
use tokio::sync::Semaphore;

use super::error::ProxyError;
use crate::model::{BasicAuth, BoundedMap, Users};

/// How long a successful check is remembered.
pub const VERIFIED_FOR: Duration = Duration::from_secs(300);
/// Successful checks remembered at most (about; see [`BoundedMap`]).
const VERIFIED_CAPACITY: usize = 16_384;
/// Password checks a client address may cause, per second, after its burst.
pub const ATTEMPTS_PER_SECOND: u32 = 5;
pub const ATTEMPTS_BURST: u32 = 20;
/// Client addresses whose budget is tracked at most.
const CLIENTS_CAPACITY: usize = 65_536;
/// How long a request may wait for its turn at an expensive check.
pub const QUEUE_WAIT: Duration = Duration::from_secs(5);

type Attempts = RateLimiter<IpAddr, BoundedMap<IpAddr, u64>, MonotonicClock, NoOpMiddleware>;

pub struct Authenticator {
    /// Keys the remembered checks: nothing in memory says which credentials were valid.
    secret: [u8; 32],
    verified: BoundedMap<[u8; 32], Instant>,
    attempts: Attempts,
    permits: Semaphore,
}

/// A check that has to be made before the request may go on.
pub struct Pending {
    table: Arc<Users>,
    user: String,
    password: Vec<u8>,
    key: [u8; 32],
    challenge: HeaderValue,
}

impl std::fmt::Debug for Pending {
    /// The user only: never the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Default for Authenticator {
    fn default() -> Self {
        Self::new()
    }
}

impl Authenticator {
    pub fn new() -> Self {
        let mut secret = [0; 32];
        // Never fails on a supported platform; zeros would still be a working key.
        let _ = aws_lc_rs::rand::fill(&mut secret);
        let quota =
            Quota::per_second(nonzero(ATTEMPTS_PER_SECOND)).allow_burst(nonzero(ATTEMPTS_BURST));
        Self {
            secret,
            verified: BoundedMap::new(VERIFIED_CAPACITY),
            attempts: RateLimiter::new(quota, BoundedMap::new(CLIENTS_CAPACITY), MonotonicClock),
            permits: Semaphore::new(Self::parallel()),
        }
    }

    /// Expensive checks at once: half the cores, at least one, so password checks can
    /// never take all of the proxy's CPU.
    pub fn parallel() -> usize {
        std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1))
    }

    /// Checks a request's credentials against `auth`: `Ok(None)` lets it through, `Ok(Some)`
    /// needs [`Authenticator::verify`] first, `Err` is the answer (401, 429).
    pub fn check(
        &self,
        auth: &BasicAuth,
        headers: &HeaderMap,
        client: IpAddr,
    ) -> Result<Option<Pending>, ProxyError> {
        let unauthorized = || ProxyError::Unauthorized(Some(auth.challenge.clone()));
        let Some(value) = headers.get(AUTHORIZATION) else {
            return Err(unauthorized());
        };
        let key = self.key(&auth.table, value.as_bytes());
        if self
            .verified
            .get(&key)
            .is_some_and(|until| until > Instant::now())
        {
            return Ok(None);
        }
        let Some((user, password)) = credentials(value) else {
            return Err(unauthorized());
        };
        // Every check made counts, whatever it finds.
        if self.attempts.check_key(&client).is_err() {
            return Err(ProxyError::TooManyAttempts);
        }
        let Some(hash) = auth.table.get(&user) else {
            return Err(unauthorized());
        };
        if !hash.is_expensive() {
            return if hash.verify(&password) {
                self.remember(key);
                Ok(None)
            } else {
                Err(unauthorized())
            };
        }
        Ok(Some(Pending {
            table: auth.table.clone(),
            user,
            password,
            key,
            challenge: auth.challenge.clone(),
        }))
    }

    /// Makes an expensive check off the event loop, waiting its turn.
    pub async fn verify(&self, pending: Pending) -> Result<(), ProxyError> {
        let permit = match tokio::time::timeout(QUEUE_WAIT, self.permits.acquire()).await {
            Ok(Ok(permit)) => permit,
            _ => return Err(ProxyError::AuthOverloaded),
        };
        let Pending {
            table,
            user,
            password,
            key,
            challenge,
        } = pending;
        let ok = tokio::task::spawn_blocking(move || {
            table.get(&user).is_some_and(|h| h.verify(&password))
        })
        .await
        .unwrap_or(false);
        drop(permit);
        if ok {
            self.remember(key);
            Ok(())
        } else {
            Err(ProxyError::Unauthorized(Some(challenge)))
        }
    }

    fn remember(&self, key: [u8; 32]) {
        self.verified.insert(key, Instant::now() + VERIFIED_FOR);
    }

    fn key(&self, table: &Users, credentials: &[u8]) -> [u8; 32] {
        let mut ctx = digest::Context::new(&digest::SHA256);
        ctx.update(&self.secret);
        ctx.update(table.digest());
        ctx.update(credentials);
        let mut key = [0; 32];
        key.copy_from_slice(ctx.finish().as_ref());
        key
    }

    /// Successful checks remembered now (for tests and the figures).
    pub fn remembered(&self) -> usize {
        self.verified.len()
    }
}

fn nonzero(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

/// `Authorization: Basic base64(user:password)`; the scheme is case-insensitive.
fn credentials(value: &HeaderValue) -> Option<(String, Vec<u8>)> {
    let bytes = value.as_bytes();
    let (scheme, rest) = bytes.split_at(bytes.iter().position(|&b| b == b' ')?);
    if !scheme.eq_ignore_ascii_case(b"basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(rest.trim_ascii())
        .ok()?;
    let colon = decoded.iter().position(|&b| b == b':')?;
    let user = std::str::from_utf8(&decoded[..colon]).ok()?.to_owned();
    Some((user, decoded[colon + 1..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic_auth(htpasswd: &str) -> BasicAuth {
        let table = Users::from_htpasswd(htpasswd).unwrap();
        BasicAuth {
            secret: "ns/s".into(),
            realm: "r".into(),
            challenge: HeaderValue::from_static("Basic realm=\"r\""),
            table: Arc::new(table),
        }
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        let v = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        h.insert(AUTHORIZATION, format!("Basic {v}").parse().unwrap());
        h
    }

    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn credentials_read_the_basic_scheme_only() {
        let v = HeaderValue::from_static("basic Zm9vOmJhcjpiYXo=");
        assert_eq!(credentials(&v), Some(("foo".into(), b"bar:baz".to_vec())));
        for bad in ["Bearer Zm9vOmJhcg==", "Basic !!!", "Basic Zm9v", "Basic"] {
            assert_eq!(credentials(&HeaderValue::from_static(bad)), None, "{bad}");
        }
    }

    #[test]
    fn cheap_hashes_are_checked_inline_and_remembered() {
        let a = Authenticator::new();
        let auth = basic_auth("foo:{PLAIN}bar");
        assert!(matches!(
            a.check(&auth, &basic("foo", "bar"), CLIENT),
            Ok(None)
        ));
        assert_eq!(a.remembered(), 1);
        for (user, password) in [("foo", "baz"), ("nobody", "bar")] {
            let e = a.check(&auth, &basic(user, password), CLIENT).unwrap_err();
            assert!(matches!(e, ProxyError::Unauthorized(_)), "{e}");
        }
        let e = a.check(&auth, &HeaderMap::new(), CLIENT).unwrap_err();
        assert_eq!(e.status(), 401);
    }

    #[tokio::test]
    async fn bcrypt_is_checked_off_the_loop_once_per_credentials() {
        let a = Authenticator::new();
        let hash = bcrypt::hash("bar", 4).unwrap();
        let auth = basic_auth(&format!("foo:{hash}"));
        let pending = a
            .check(&auth, &basic("foo", "bar"), CLIENT)
            .unwrap()
            .unwrap();
        a.verify(pending).await.unwrap();
        // Remembered: no second check, and no budget used.
        for _ in 0..100 {
            assert!(matches!(
                a.check(&auth, &basic("foo", "bar"), CLIENT),
                Ok(None)
            ));
        }
        let pending = a
            .check(&auth, &basic("foo", "wrong"), CLIENT)
            .unwrap()
            .unwrap();
        assert_eq!(a.verify(pending).await.unwrap_err().status(), 401);
        // A changed Secret: what was remembered no longer counts.
        let changed = basic_auth(&format!("foo:{hash}\nother:{{PLAIN}}x"));
        assert!(a
            .check(&changed, &basic("foo", "bar"), CLIENT)
            .unwrap()
            .is_some());
    }

    #[test]
    fn a_client_guessing_passwords_runs_out_of_checks() {
        let a = Authenticator::new();
        let auth = basic_auth("foo:{PLAIN}bar");
        let mut limited = 0;
        for i in 0..1_000 {
            match a.check(&auth, &basic("foo", &format!("guess{i}")), CLIENT) {
                Err(ProxyError::TooManyAttempts) => limited += 1,
                Err(ProxyError::Unauthorized(_)) => {}
                other => panic!("{:?}", other.map(|p| p.is_some())),
            }
        }
        // The burst, and at most a few more refilled while the loop ran.
        assert!(limited >= 1_000 - ATTEMPTS_BURST as usize - 5, "{limited}");
        // Another client is not affected, and the right password still works for it.
        let other: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(matches!(
            a.check(&auth, &basic("foo", "bar"), other),
            Ok(None)
        ));
    }
}
