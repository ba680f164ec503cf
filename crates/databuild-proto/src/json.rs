//! The proto3 JSON mapping: canonical output, lenient input (both field-name spellings,
//! enum names and numbers), with errors that say where the document went wrong.

use serde::{de::DeserializeOwned, Serialize};

/// A JSON document that does not match the expected message.
#[derive(Debug, thiserror::Error)]
#[error("{message} at line {line} column {column}")]
pub struct JsonError {
    /// What serde said, e.g. "unknown field `foo`".
    pub message: String,
    /// 1-based line of the error in the document.
    pub line: usize,
    /// 1-based column of the error in the document.
    pub column: usize,
}

/// Parses a proto3 JSON document into a message.
pub fn from_json<T: DeserializeOwned>(text: &str) -> Result<T, JsonError> {
    serde_json::from_str(text).map_err(|e| {
        let full = e.to_string();
        let message = match full.rfind(" at line ") {
            Some(i) => full[..i].to_string(),
            None => full,
        };
        JsonError {
            message,
            line: e.line(),
            column: e.column(),
        }
    })
}

/// Serializes a message as compact canonical proto3 JSON.
pub fn to_json<T: Serialize>(msg: &T) -> String {
    serde_json::to_string(msg).expect("generated messages always serialize")
}

/// Serializes a message as indented canonical proto3 JSON.
pub fn to_json_pretty<T: Serialize>(msg: &T) -> String {
    serde_json::to_string_pretty(msg).expect("generated messages always serialize")
}
