//! Randomness for ids, jitter and fake-provider dice that is reproducible in the simulation.
//!
//! Under madsim every draw comes from the seeded simulation RNG, so a seed replays exactly;
//! in production it comes from the OS (through `uuid`'s v4 generator).

/// 128 random bits.
pub fn random_u128() -> u128 {
    #[cfg(madsim)]
    {
        madsim::rand::random::<u128>()
    }
    #[cfg(not(madsim))]
    {
        // The one place production draws OS randomness (the simulation draws from madsim).
        #[allow(clippy::disallowed_methods)]
        let id = uuid::Uuid::new_v4().as_u128();
        id
    }
}

/// A random (version 4) UUID.
pub fn uuid_v4() -> uuid::Uuid {
    uuid::Builder::from_random_bytes(random_u128().to_le_bytes()).into_uuid()
}

#[cfg(test)]
mod tests {
    #[test]
    fn uuids_are_version_4_and_distinct() {
        let a = super::uuid_v4();
        let b = super::uuid_v4();
        assert_eq!(a.get_version_num(), 4);
        assert_ne!(a, b);
    }
}
