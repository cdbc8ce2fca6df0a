//! Branches, tags, Call-IDs and cnonces. Randomness is an input like time:
//! the stack asks an [`Ids`] source, tests give it a predictable one.

/// A source of unique tokens (lowercase hex, at least 64 random bits in production).
pub trait Ids: Send {
    fn token(&mut self) -> String;
}

/// Tokens from the OS random generator.
#[derive(Default)]
pub struct RandomIds;

impl Ids for RandomIds {
    fn token(&mut self) -> String {
        let mut bytes = [0u8; 12];
        // The OS generator does not fail on supported platforms; if it ever
        // does, a time-derived token is still unique enough for a branch or tag.
        if getrandom::fill(&mut bytes).is_err() {
            let nanos =
                std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
            bytes[..12].copy_from_slice(&nanos.to_le_bytes()[..12]);
        }
        hex::encode(bytes)
    }
}

/// `t1`, `t2`, … for tests.
#[derive(Default)]
pub struct SequentialIds(u64);

impl Ids for SequentialIds {
    fn token(&mut self) -> String {
        self.0 += 1;
        format!("t{}", self.0)
    }
}
