//! argon2id password hashing, kept off the async runtime.
//!
//! One hash costs ~19 MiB and tens of milliseconds of CPU. Running it on a runtime thread
//! would stall every other request on that thread, so it runs on the blocking pool; and a
//! semaphore sized to the cores bounds how many run at once, so a burst of sign-ins queues
//! for CPU instead of spawning hundreds of threads each holding 19 MiB.

use std::sync::{Arc, LazyLock};

use anyhow::Context;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use tokio::sync::Semaphore;

use super::model::Password;

/// OWASP's argon2id recommendation: m = 19 MiB, t = 2, p = 1.
fn argon2() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).expect("static argon2 parameters are valid");
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashed once, then verified against when the email is unknown, so that a sign-in for an
/// unknown email costs the same time as one with a wrong password.
static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    argon2()
        .hash_password(b"not-a-real-password-only-for-timing")
        .expect("hashing a constant cannot fail")
        .to_string()
});

#[derive(Clone)]
pub struct PasswordHasher {
    /// Permits for concurrent hashes: one per core.
    permits: Arc<Semaphore>,
}

impl Default for PasswordHasher {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            permits: Arc::new(Semaphore::new(cores)),
        }
    }
}

impl PasswordHasher {
    /// Returns the PHC string of a fresh salted hash.
    pub async fn hash(&self, password: &Password) -> anyhow::Result<String> {
        let password = password.expose().to_owned();
        self.run(move || {
            argon2()
                .hash_password(password.as_bytes())
                .map(|hash| hash.to_string())
                .map_err(|error| anyhow::anyhow!("argon2 hashing failed: {error}"))
        })
        .await
    }

    /// Checks a password against a stored hash, or against a dummy hash when there is no
    /// user, so both cases take the same time; the latter is always `false`.
    pub async fn verify(
        &self,
        password: &Password,
        stored: Option<String>,
    ) -> anyhow::Result<bool> {
        let password = password.expose().to_owned();
        self.run(move || {
            let exists = stored.is_some();
            let phc = stored.unwrap_or_else(|| DUMMY_HASH.clone());
            let hash = PasswordHash::new(&phc)
                .map_err(|error| anyhow::anyhow!("stored password hash is malformed: {error}"))?;
            Ok(exists && argon2().verify_password(password.as_bytes(), &hash).is_ok())
        })
        .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
    ) -> anyhow::Result<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .context("password hasher closed")?;
        tokio::task::spawn_blocking(work)
            .await
            .context("password hashing task failed")?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn password(raw: &str) -> Password {
        Password::parse("password", raw.into()).unwrap()
    }

    #[tokio::test]
    async fn hashes_with_owasp_parameters_and_verifies() {
        let hasher = PasswordHasher::default();
        let hash = hasher.hash(&password("correct horse")).await.unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(
            hasher
                .verify(&password("correct horse"), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(&password("wrong horse"), Some(hash))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn unknown_users_never_verify() {
        let hasher = PasswordHasher::default();
        let dummy_password = password("not-a-real-password-only-for-timing");
        assert!(!hasher.verify(&dummy_password, None).await.unwrap());
    }
}
