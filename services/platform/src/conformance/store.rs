//! Store conformance suite (written next).
