//! Every error the service returns, in ONE table: error code → gRPC status code → HTTP
//! status. Clients get the code and a message written for them; internal details (database
//! errors, I/O) are logged with an error id and never sent.

use axum::http::StatusCode;
use databuild_bel::BelError;
use databuild_core::{CoreError, PlanError};
use tonic::Code;

/// The stable error codes of the API (the `code` of an HTTP error body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// A malformed request: bad JSON or protobuf, an invalid ref, a bad query or limit.
    InvalidArgument,
    /// Something named in the request does not exist (a partition, a graph run).
    NotFound,
    /// The request is well-formed but the graph or the event log cannot do it: a
    /// configure error, a missing external partition, a cycle, an invalid transition.
    FailedPrecondition,
    /// Another graph run holds the partition and delegation was refused.
    Aborted,
    /// The build ran and some partition failed.
    BuildFailed,
    /// The run was cancelled (the service is shutting down).
    Cancelled,
    /// A stream consumer fell too far behind, or a principal holds too many streams.
    ResourceExhausted,
    /// The request carries no valid credentials (no token, a wrong or revoked one).
    Unauthenticated,
    /// The principal's role does not allow the request, or the request is refused as
    /// cross-origin, without a CSRF token, or for a `Host` the service does not answer to.
    PermissionDenied,
    /// A JSON endpoint was sent a body that is not `application/json`.
    UnsupportedMediaType,
    /// The event log is busy, or the service is shutting down; retry.
    Unavailable,
    /// No route or method of that name.
    Unimplemented,
    /// A bug or an environment failure; details are in the service log.
    Internal,
}

/// The table: code name, gRPC code, HTTP status.
const TABLE: &[(ErrorCode, &str, Code, StatusCode)] = &[
    (
        ErrorCode::InvalidArgument,
        "invalid_argument",
        Code::InvalidArgument,
        StatusCode::BAD_REQUEST,
    ),
    (
        ErrorCode::NotFound,
        "not_found",
        Code::NotFound,
        StatusCode::NOT_FOUND,
    ),
    (
        ErrorCode::FailedPrecondition,
        "failed_precondition",
        Code::FailedPrecondition,
        StatusCode::UNPROCESSABLE_ENTITY,
    ),
    (
        ErrorCode::Aborted,
        "aborted",
        Code::Aborted,
        StatusCode::CONFLICT,
    ),
    (
        ErrorCode::BuildFailed,
        "build_failed",
        Code::Aborted,
        StatusCode::CONFLICT,
    ),
    (
        ErrorCode::Cancelled,
        "cancelled",
        Code::Cancelled,
        StatusCode::SERVICE_UNAVAILABLE,
    ),
    (
        ErrorCode::ResourceExhausted,
        "resource_exhausted",
        Code::ResourceExhausted,
        StatusCode::TOO_MANY_REQUESTS,
    ),
    (
        ErrorCode::Unauthenticated,
        "unauthenticated",
        Code::Unauthenticated,
        StatusCode::UNAUTHORIZED,
    ),
    (
        ErrorCode::PermissionDenied,
        "permission_denied",
        Code::PermissionDenied,
        StatusCode::FORBIDDEN,
    ),
    (
        ErrorCode::UnsupportedMediaType,
        "unsupported_media_type",
        Code::InvalidArgument,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
    ),
    (
        ErrorCode::Unavailable,
        "unavailable",
        Code::Unavailable,
        StatusCode::SERVICE_UNAVAILABLE,
    ),
    (
        ErrorCode::Unimplemented,
        "unimplemented",
        Code::Unimplemented,
        StatusCode::NOT_FOUND,
    ),
    (
        ErrorCode::Internal,
        "internal",
        Code::Internal,
        StatusCode::INTERNAL_SERVER_ERROR,
    ),
];

impl ErrorCode {
    fn row(self) -> &'static (ErrorCode, &'static str, Code, StatusCode) {
        TABLE
            .iter()
            .find(|r| r.0 == self)
            .expect("every code is in the table")
    }

    /// The code's name in HTTP error bodies, e.g. `invalid_argument`.
    pub fn name(self) -> &'static str {
        self.row().1
    }

    /// The gRPC status code.
    pub fn grpc(self) -> Code {
        self.row().2
    }

    /// The HTTP status.
    pub fn http(self) -> StatusCode {
        self.row().3
    }

    /// Every code with its gRPC code and HTTP status (for the OpenAPI document and tests).
    pub fn table() -> impl Iterator<Item = (&'static str, Code, StatusCode)> {
        TABLE.iter().map(|r| (r.1, r.2, r.3))
    }
}

/// An error as clients see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// What kind of error.
    pub code: ErrorCode,
    /// A message for people: what was wrong and what to do.
    pub message: String,
}

impl ApiError {
    /// An error with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// INVALID_ARGUMENT.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidArgument, message)
    }

    /// NOT_FOUND.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::NotFound, message)
    }

    /// INTERNAL: logs `detail` with an error id and returns a message naming only the id.
    pub fn internal(detail: &dyn std::fmt::Display) -> Self {
        let id = databuild_bel::new_id();
        tracing::error!(error_id = %id, error = %detail, "internal error");
        Self::new(
            ErrorCode::Internal,
            format!("internal error (error id {id}); the service log has the details"),
        )
    }

    /// The gRPC status.
    pub fn to_status(&self) -> tonic::Status {
        tonic::Status::new(self.code.grpc(), self.message.clone())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        e.to_status()
    }
}

impl From<BelError> for ApiError {
    fn from(e: BelError) -> Self {
        let code = match &e {
            BelError::InvalidQuery(_) | BelError::InvalidEvent(_) => ErrorCode::InvalidArgument,
            BelError::UnknownPartition(_) => ErrorCode::NotFound,
            BelError::InvalidTransition(_) => ErrorCode::FailedPrecondition,
            BelError::Claimed { .. } => ErrorCode::Aborted,
            BelError::Busy { .. } => {
                tracing::warn!(error = %e, "event log busy");
                return Self::new(
                    ErrorCode::Unavailable,
                    "the event log is busy with other writers; retry shortly",
                );
            }
            _ => return Self::internal(&e),
        };
        Self::new(code, e.to_string())
    }
}

impl From<CoreError> for ApiError {
    fn from(e: CoreError) -> Self {
        let code = match &e {
            CoreError::Bel(_) | CoreError::Plan(PlanError::Bel(_)) => {
                return match e {
                    CoreError::Bel(b) | CoreError::Plan(PlanError::Bel(b)) => b.into(),
                    _ => unreachable!("matched above"),
                }
            }
            CoreError::Plan(PlanError::InvalidRef(_))
            | CoreError::InvalidJobGraph(_)
            | CoreError::Catalog(_) => ErrorCode::InvalidArgument,
            CoreError::Graph(_)
            | CoreError::Plan(_)
            | CoreError::Forget(_)
            | CoreError::Register(_) => ErrorCode::FailedPrecondition,
            CoreError::Delegation(_) => ErrorCode::Aborted,
            CoreError::Cancelled(_) => ErrorCode::Cancelled,
            CoreError::Io { .. } | CoreError::Stopped { .. } => return Self::internal(&e),
        };
        Self::new(code, e.to_string())
    }
}

impl From<databuild_proto::RefError> for ApiError {
    fn from(e: databuild_proto::RefError) -> Self {
        Self::invalid(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_one_row_and_internal_errors_hide_details() {
        let names: Vec<&str> = ErrorCode::table().map(|r| r.0).collect();
        let mut unique = names.clone();
        unique.dedup();
        assert_eq!(names, unique);
        assert_eq!(ErrorCode::InvalidArgument.http(), StatusCode::BAD_REQUEST);
        assert_eq!(ErrorCode::NotFound.grpc(), Code::NotFound);
        let e = ApiError::internal(&"disk I/O error at /secret/path");
        assert!(!e.message.contains("/secret"), "{}", e.message);
        let e: ApiError = BelError::InvalidQuery("limit -1".into()).into();
        assert_eq!(e.code, ErrorCode::InvalidArgument);
    }
}
