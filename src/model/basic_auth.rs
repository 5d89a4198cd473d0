//! Basic auth users (`auth-type: basic`, INGRESS-NGINX.md §C3): the users of an htpasswd
//! Secret, parsed once by the control plane, and the password check for each hash format
//! nginx's `auth_basic_user_file` accepts that is still in use.
//!
//! Formats: bcrypt (`$2y$`, `$2b$`, `$2a$`, what `htpasswd -B` writes), MD5-crypt (`$apr1$`,
//! `htpasswd -m`, and `$1$`), `{SHA}` and `{SSHA}` (salted), `{PLAIN}`. A line in any other
//! format (DES crypt, `$5$`/`$6$`) is refused when the Secret is read, so the route answers
//! 503 rather than lock everyone out, or let anyone in, silently. A user whose hash is
//! empty (`user:`) exists but no password matches (ingress-nginx answers 401).

use std::collections::HashMap;
use std::fmt;

use aws_lc_rs::constant_time::verify_slices_are_equal;
use aws_lc_rs::digest;
use base64::Engine as _;
use md5::{Digest as _, Md5};

/// One stored password hash.
#[derive(Clone, PartialEq, Eq)]
pub enum PasswordHash {
    /// `$2y$10$...`: checked with the bcrypt crate (slow by design: off the event loop).
    Bcrypt(String),
    /// MD5-crypt: `$apr1$salt$checksum` or `$1$salt$checksum`.
    Md5Crypt {
        magic: &'static str,
        salt: String,
        checksum: String,
    },
    /// `{SHA}base64(sha1(password))`.
    Sha1([u8; 20]),
    /// `{SSHA}base64(sha1(password + salt) + salt)`.
    SaltedSha1 { digest: [u8; 20], salt: Vec<u8> },
    /// `{PLAIN}password`.
    Plain(Vec<u8>),
    /// An empty hash: no password matches.
    Never,
}

impl fmt::Debug for PasswordHash {
    /// The format only: hashes are as secret as the Secret that holds them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.format())
    }
}

impl PasswordHash {
    /// Reads one hash as htpasswd stores it; the error names the format problem, never the
    /// hash itself.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let text = text.trim();
        if text.is_empty() {
            return Ok(PasswordHash::Never);
        }
        if let Some(rest) = text.strip_prefix("{SHA}") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| "a {SHA} hash that is not base64")?;
            let digest: [u8; 20] = bytes
                .try_into()
                .map_err(|_| "a {SHA} hash that is not 20 bytes")?;
            return Ok(PasswordHash::Sha1(digest));
        }
        if let Some(rest) = text.strip_prefix("{SSHA}") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(rest)
                .map_err(|_| "an {SSHA} hash that is not base64")?;
            if bytes.len() <= 20 {
                return Err("an {SSHA} hash without a salt");
            }
            let (d, salt) = bytes.split_at(20);
            let mut digest = [0; 20];
            digest.copy_from_slice(d);
            return Ok(PasswordHash::SaltedSha1 {
                digest,
                salt: salt.to_vec(),
            });
        }
        if let Some(rest) = text.strip_prefix("{PLAIN}") {
            return Ok(PasswordHash::Plain(rest.as_bytes().to_vec()));
        }
        for magic in ["$apr1$", "$1$"] {
            if let Some(rest) = text.strip_prefix(magic) {
                let (salt, checksum) = rest
                    .split_once('$')
                    .ok_or("an MD5-crypt hash without its checksum")?;
                if salt.len() > 8 || checksum.len() != 22 || !checksum.bytes().all(is_itoa64) {
                    return Err("a malformed MD5-crypt hash");
                }
                return Ok(PasswordHash::Md5Crypt {
                    magic,
                    salt: salt.to_owned(),
                    checksum: checksum.to_owned(),
                });
            }
        }
        if ["$2y$", "$2b$", "$2a$", "$2x$"]
            .iter()
            .any(|p| text.starts_with(p))
        {
            // bcrypt's own parser checks the rest; a malformed one is caught here, once.
            if bcrypt::verify("", text).is_err() {
                return Err("a malformed bcrypt hash");
            }
            return Ok(PasswordHash::Bcrypt(text.to_owned()));
        }
        if text.starts_with("$5$") || text.starts_with("$6$") {
            return Err("a SHA-crypt hash ($5$/$6$), which wicket does not check: make the line with htpasswd -B (bcrypt)");
        }
        Err("a hash in a format wicket does not check (DES crypt?): make the line with htpasswd -B (bcrypt)")
    }

    pub fn format(&self) -> &'static str {
        match self {
            PasswordHash::Bcrypt(_) => "bcrypt",
            PasswordHash::Md5Crypt { .. } => "md5-crypt",
            PasswordHash::Sha1(_) => "sha1",
            PasswordHash::SaltedSha1 { .. } => "ssha",
            PasswordHash::Plain(_) => "plain",
            PasswordHash::Never => "empty",
        }
    }

    /// Whether checking costs real CPU (bcrypt: tens of milliseconds and more); such checks
    /// run off the event loop, a few at a time.
    pub fn is_expensive(&self) -> bool {
        matches!(self, PasswordHash::Bcrypt(_))
    }

    /// Whether `password` is the one this hash was made from.
    pub fn verify(&self, password: &[u8]) -> bool {
        match self {
            PasswordHash::Bcrypt(hash) => bcrypt::verify(password, hash).unwrap_or(false),
            PasswordHash::Md5Crypt {
                magic,
                salt,
                checksum,
            } => {
                let computed = md5_crypt(password, salt.as_bytes(), magic.as_bytes());
                verify_slices_are_equal(computed.as_bytes(), checksum.as_bytes()).is_ok()
            }
            PasswordHash::Sha1(expected) => {
                let d = digest::digest(&digest::SHA1_FOR_LEGACY_USE_ONLY, password);
                verify_slices_are_equal(d.as_ref(), expected).is_ok()
            }
            PasswordHash::SaltedSha1 {
                digest: expected,
                salt,
            } => {
                let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
                ctx.update(password);
                ctx.update(salt);
                verify_slices_are_equal(ctx.finish().as_ref(), expected).is_ok()
            }
            PasswordHash::Plain(expected) => verify_slices_are_equal(password, expected).is_ok(),
            PasswordHash::Never => false,
        }
    }
}

const ITOA64: &[u8; 64] = b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

fn is_itoa64(b: u8) -> bool {
    ITOA64.contains(&b)
}

/// Poul-Henning Kamp's MD5-crypt, the checksum part (22 characters); Apache's `$apr1$` is
/// the same construction with its own magic string.
pub fn md5_crypt(password: &[u8], salt: &[u8], magic: &[u8]) -> String {
    let salt = &salt[..salt.len().min(8)];
    let alternate = Md5::new()
        .chain_update(password)
        .chain_update(salt)
        .chain_update(password)
        .finalize();
    let mut ctx = Md5::new()
        .chain_update(password)
        .chain_update(magic)
        .chain_update(salt);
    let mut left = password.len();
    while left > 0 {
        let n = left.min(16);
        ctx.update(&alternate[..n]);
        left -= n;
    }
    let mut i = password.len();
    while i > 0 {
        if i & 1 == 1 {
            ctx.update([0u8]);
        } else {
            ctx.update(&password[..1]);
        }
        i >>= 1;
    }
    let mut sum = ctx.finalize();
    for round in 0..1000 {
        let mut c = Md5::new();
        if round & 1 == 1 {
            c.update(password);
        } else {
            c.update(sum);
        }
        if round % 3 != 0 {
            c.update(salt);
        }
        if round % 7 != 0 {
            c.update(password);
        }
        if round & 1 == 1 {
            c.update(sum);
        } else {
            c.update(password);
        }
        sum = c.finalize();
    }
    let mut out = String::with_capacity(22);
    let mut put = |v: u32, n: usize| {
        let mut v = v;
        for _ in 0..n {
            out.push(ITOA64[(v & 0x3f) as usize] as char);
            v >>= 6;
        }
    };
    for (a, b, c) in [(0, 6, 12), (1, 7, 13), (2, 8, 14), (3, 9, 15), (4, 10, 5)] {
        put(
            (u32::from(sum[a]) << 16) | (u32::from(sum[b]) << 8) | u32::from(sum[c]),
            4,
        );
    }
    put(u32::from(sum[11]), 2);
    out
}

/// The users of one basic-auth Secret.
#[derive(Clone)]
pub struct Users {
    users: HashMap<String, PasswordHash>,
    /// SHA-256 of the users and hashes: two tables are equal when this is, and a cached
    /// successful check is only valid for the table it was made against.
    digest: [u8; 32],
}

impl PartialEq for Users {
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

impl Eq for Users {}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Users({} users)", self.users.len())
    }
}

/// Why a Secret's users cannot be used; never quotes the Secret.
#[derive(Debug, PartialEq, Eq)]
pub struct UsersError(pub String);

impl Users {
    /// `auth-secret-type: auth-file`: htpasswd lines `user:hash`; empty lines and `#`
    /// comments are skipped.
    pub fn from_htpasswd(text: &str) -> Result<Self, UsersError> {
        let mut pairs = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .ok_or_else(|| UsersError(format!("line {} is not user:hash", n + 1)))?;
            pairs.push((user.to_owned(), hash, format!("line {}", n + 1)));
        }
        Self::from_pairs(pairs)
    }

    /// `auth-secret-type: auth-map`: each key is a user, its value the hash.
    pub fn from_map<'a>(
        entries: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, UsersError> {
        Self::from_pairs(
            entries
                .into_iter()
                .map(|(user, hash)| (user.to_owned(), hash, format!("key {user:?}")))
                .collect(),
        )
    }

    fn from_pairs(pairs: Vec<(String, &str, String)>) -> Result<Self, UsersError> {
        let mut users = HashMap::with_capacity(pairs.len());
        let mut sorted: Vec<(&str, &str)> = Vec::with_capacity(pairs.len());
        for (user, hash, at) in &pairs {
            if user.is_empty() {
                return Err(UsersError(format!("{at} has an empty user name")));
            }
            let parsed = PasswordHash::parse(hash)
                .map_err(|why| UsersError(format!("{at} (user {user:?}) holds {why}")))?;
            // A repeated user: the first line wins, as in nginx.
            users.entry(user.clone()).or_insert(parsed);
            sorted.push((user, hash.trim()));
        }
        sorted.sort();
        let mut ctx = digest::Context::new(&digest::SHA256);
        for (user, hash) in sorted {
            ctx.update(user.as_bytes());
            ctx.update(b":");
            ctx.update(hash.as_bytes());
            ctx.update(b"\n");
        }
        let mut d = [0; 32];
        d.copy_from_slice(ctx.finish().as_ref());
        Ok(Self { users, digest: d })
    }

    pub fn get(&self, user: &str) -> Option<&PasswordHash> {
        self.users.get(user)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    pub fn digest(&self) -> &[u8; 32] {
        &self.digest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_crypt_matches_apache_htpasswd_and_openssl() {
        // `openssl passwd -apr1 -salt lZL6V/ci password` and `openssl passwd -1 -salt
        // saltsalt password`.
        assert_eq!(
            md5_crypt(b"password", b"lZL6V/ci", b"$apr1$"),
            "eIMz/iKDkbtys/uU7LEK00"
        );
        assert_eq!(
            md5_crypt(b"password", b"saltsalt", b"$1$"),
            "qjXMvbEw8oaL.CzflDtaK/"
        );
    }

    #[test]
    fn every_supported_format_checks_the_password() {
        let cases = [
            "$apr1$lZL6V/ci$eIMz/iKDkbtys/uU7LEK00",
            "$1$saltsalt$qjXMvbEw8oaL.CzflDtaK/",
            // `htpasswd -nbs user password`
            "{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
            "{PLAIN}password",
        ];
        for text in cases {
            let hash = PasswordHash::parse(text).unwrap();
            assert!(hash.verify(b"password"), "{text}");
            assert!(!hash.verify(b"Password"), "{text}");
            assert!(!hash.verify(b""), "{text}");
        }
        let bcrypt = bcrypt::hash("password", 4).unwrap();
        let hash = PasswordHash::parse(&bcrypt).unwrap();
        assert!(hash.is_expensive());
        assert!(hash.verify(b"password"));
        assert!(!hash.verify(b"passwore"));
        // {SSHA}: sha1(password + salt) + salt.
        let mut ctx = digest::Context::new(&digest::SHA1_FOR_LEGACY_USE_ONLY);
        ctx.update(b"password");
        ctx.update(b"NaCl");
        let mut raw = ctx.finish().as_ref().to_vec();
        raw.extend_from_slice(b"NaCl");
        let ssha = format!(
            "{{SSHA}}{}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        );
        let hash = PasswordHash::parse(&ssha).unwrap();
        assert!(hash.verify(b"password") && !hash.verify(b"NaCl"));
        assert!(!PasswordHash::parse("").unwrap().verify(b""));
    }

    #[test]
    fn unknown_or_broken_hashes_are_refused_without_quoting_them() {
        for text in [
            "abJnggxhB/yWI",
            "$6$rounds=5000$salt$hash",
            "$2y$10$short",
            "{SHA}not base64!",
            "$apr1$salt",
        ] {
            let why = PasswordHash::parse(text).unwrap_err();
            assert!(!why.contains(text), "{why}");
        }
    }

    #[test]
    fn htpasswd_files_and_maps_become_users() {
        let users = Users::from_htpasswd(
            "# admins\nfoo:{PLAIN}bar\n\n  baz:$apr1$lZL6V/ci$eIMz/iKDkbtys/uU7LEK00  \nfoo:{PLAIN}second\n",
        )
        .unwrap();
        assert_eq!(users.len(), 2);
        assert!(users.get("foo").unwrap().verify(b"bar"));
        assert!(!users.get("foo").unwrap().verify(b"second"));
        assert!(users.get("baz").unwrap().verify(b"password"));
        let err = Users::from_htpasswd("foo:{PLAIN}bar\nnot a line\n").unwrap_err();
        assert_eq!(err.0, "line 2 is not user:hash");
        let err = Users::from_htpasswd("foo:secretDEShash\n").unwrap_err();
        assert!(
            err.0.starts_with("line 1 (user \"foo\") holds"),
            "{}",
            err.0
        );
        assert!(!err.0.contains("secretDEShash"));
        let map = Users::from_map([("foo", "{PLAIN}bar")]).unwrap();
        assert!(map.get("foo").unwrap().verify(b"bar"));
        // Same users and hashes, whatever the order: equal tables.
        let a = Users::from_htpasswd("a:{PLAIN}1\nb:{PLAIN}2").unwrap();
        let b = Users::from_map([("b", "{PLAIN}2"), ("a", "{PLAIN}1")]).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, Users::from_map([("a", "{PLAIN}1")]).unwrap());
        // `user:` exists, and nothing opens it.
        let empty = Users::from_htpasswd("foo:").unwrap();
        assert!(!empty.get("foo").unwrap().verify(b""));
    }
}
