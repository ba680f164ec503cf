//! Partition ref validation: a non-empty UTF-8 string without control characters, at
//! most 4096 bytes.

/// The longest partition ref, in bytes.
pub const MAX_REF_BYTES: usize = 4096;

/// Why a string is not a valid partition ref.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RefError {
    /// The empty string.
    #[error("empty partition ref; a ref is a non-empty string such as `reviews/date=2025-01-01`")]
    Empty,
    /// Contains a control character.
    #[error("partition ref {0:?} contains a control character (byte {1:#04x}); refs may not contain control characters")]
    ControlCharacter(String, u32),
    /// Longer than [`MAX_REF_BYTES`].
    #[error("partition ref `{prefix}...` is {len} bytes long; the limit is 4096 bytes")]
    TooLong {
        /// The first 40 characters.
        prefix: String,
        /// Its length in bytes.
        len: usize,
    },
}

/// Checks that `r` is a valid partition ref.
pub fn validate_ref(r: &str) -> Result<(), RefError> {
    if r.is_empty() {
        return Err(RefError::Empty);
    }
    if r.len() > MAX_REF_BYTES {
        return Err(RefError::TooLong {
            prefix: r.chars().take(40).collect(),
            len: r.len(),
        });
    }
    if let Some(c) = r.chars().find(|c| c.is_control()) {
        return Err(RefError::ControlCharacter(r.to_string(), c as u32));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refs_are_checked_for_emptiness_control_characters_and_length() {
        assert_eq!(validate_ref(""), Err(RefError::Empty));
        assert!(matches!(
            validate_ref("a\nb"),
            Err(RefError::ControlCharacter(_, 0x0a))
        ));
        assert!(matches!(
            validate_ref(&"x".repeat(4097)),
            Err(RefError::TooLong { len: 4097, .. })
        ));
        assert_eq!(validate_ref(&"x".repeat(4096)), Ok(()));
        assert_eq!(validate_ref("s3://lake/reviews/date=2025-01-01"), Ok(()));
    }
}
