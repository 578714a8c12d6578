//! Password hashing: argon2id in PHC format. The cost is configuration — production uses
//! OWASP's first recommendation (19 MiB, 2 passes, 1 lane); the simulation a tiny one, so a
//! seed stays cheap. A stored hash names its own parameters, so hashes made at one cost keep
//! verifying after the cost changes.

use argon2::{
    password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString},
    Algorithm, Argon2, Params, Version,
};

/// Bounds on a password, in characters (the upper one bounds the hashing work per request).
pub const PASSWORD_CHARS: std::ops::RangeInclusive<usize> = 8..=128;

/// The argon2id cost of new hashes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PasswordCost {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
}

impl PasswordCost {
    /// OWASP's argon2id recommendation: m = 19 MiB, t = 2, p = 1.
    pub const PRODUCTION: PasswordCost = PasswordCost {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };
    /// The smallest cost argon2 accepts: for the simulation and tests only.
    pub const MINIMAL: PasswordCost = PasswordCost {
        memory_kib: 8,
        iterations: 1,
        parallelism: 1,
    };

    fn hasher(self) -> Result<Argon2<'static>, String> {
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, None)
            .map_err(|e| format!("argon2 cost {self:?}: {e}"))?;
        Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
    }

    /// Checks the cost is one argon2 accepts.
    pub fn validate(self) -> Result<(), String> {
        self.hasher().map(|_| ())
    }
}

/// The PHC string of `password` hashed at `cost` with `salt`.
pub fn hash(password: &str, cost: PasswordCost, salt: [u8; 16]) -> Result<String, String> {
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    cost.hasher()?
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

/// Whether `password` matches the PHC string `phc` (false for a malformed one).
pub fn verify(password: &str, phc: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(phc) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only_and_names_its_cost() {
        let h = hash("correct horse", PasswordCost::MINIMAL, [1; 16]).expect("hash");
        assert!(h.starts_with("$argon2id$v=19$m=8,t=1,p=1$"), "{h}");
        assert!(verify("correct horse", &h));
        assert!(!verify("correct horsE", &h));
        assert!(!verify("correct horse", "not a hash"));
    }

    #[test]
    fn salts_make_equal_passwords_hash_apart() {
        let a = hash("same password", PasswordCost::MINIMAL, [1; 16]).expect("a");
        let b = hash("same password", PasswordCost::MINIMAL, [2; 16]).expect("b");
        assert_ne!(a, b);
    }

    #[test]
    fn a_hash_made_at_another_cost_still_verifies() {
        let cheap = hash("pw-123456", PasswordCost::MINIMAL, [3; 16]).expect("cheap");
        let costly = PasswordCost {
            memory_kib: 64,
            iterations: 2,
            parallelism: 1,
        };
        let dear = hash("pw-123456", costly, [3; 16]).expect("dear");
        assert!(verify("pw-123456", &cheap) && verify("pw-123456", &dear));
        assert!(PasswordCost {
            memory_kib: 1,
            iterations: 0,
            parallelism: 1
        }
        .validate()
        .is_err());
    }
}
