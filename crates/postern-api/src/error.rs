//! The errors the API answers with: the model's error shapes, each with its
//! HTTP status and the message clients show.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    ValidationException,
    ResourceNotFoundException,
    ConflictException,
    ServiceQuotaExceededException,
    ThrottlingException,
    AccessDeniedException,
    /// Signature errors, as AWS names them (not shapes of the model).
    MissingAuthenticationTokenException,
    UnrecognizedClientException,
    InvalidSignatureException,
    IncompleteSignatureException,
    /// An operation or protocol this endpoint does not have.
    UnknownOperationException,
    SerializationException,
    InternalServerException,
}

impl ErrorCode {
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::ValidationException => "ValidationException",
            ErrorCode::ResourceNotFoundException => "ResourceNotFoundException",
            ErrorCode::ConflictException => "ConflictException",
            ErrorCode::ServiceQuotaExceededException => "ServiceQuotaExceededException",
            ErrorCode::ThrottlingException => "ThrottlingException",
            ErrorCode::AccessDeniedException => "AccessDeniedException",
            ErrorCode::MissingAuthenticationTokenException => "MissingAuthenticationTokenException",
            ErrorCode::UnrecognizedClientException => "UnrecognizedClientException",
            ErrorCode::InvalidSignatureException => "InvalidSignatureException",
            ErrorCode::IncompleteSignatureException => "IncompleteSignatureException",
            ErrorCode::UnknownOperationException => "UnknownOperationException",
            ErrorCode::SerializationException => "SerializationException",
            ErrorCode::InternalServerException => "InternalServerException",
        }
    }

    /// The HTTP status: the model's `httpStatusCode` for its shapes, AWS's
    /// for the others.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::ValidationException => 400,
            ErrorCode::ResourceNotFoundException => 404,
            ErrorCode::ConflictException => 409,
            ErrorCode::ServiceQuotaExceededException => 402,
            ErrorCode::ThrottlingException => 429,
            ErrorCode::AccessDeniedException => 403,
            ErrorCode::MissingAuthenticationTokenException
            | ErrorCode::UnrecognizedClientException
            | ErrorCode::InvalidSignatureException => 403,
            ErrorCode::IncompleteSignatureException => 400,
            ErrorCode::UnknownOperationException => 400,
            ErrorCode::SerializationException => 400,
            ErrorCode::InternalServerException => 500,
        }
    }

    /// Whether the model defines this error as a shape of the service
    /// (`com.amazonaws.mailmanager#Name`), as opposed to a common AWS error.
    pub fn in_model(self) -> bool {
        matches!(
            self,
            ErrorCode::ValidationException
                | ErrorCode::ResourceNotFoundException
                | ErrorCode::ConflictException
                | ErrorCode::ServiceQuotaExceededException
                | ErrorCode::ThrottlingException
                | ErrorCode::AccessDeniedException
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
        }
    }
    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::ValidationException, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::ResourceNotFoundException, message)
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::ConflictException, message)
    }
    pub fn quota(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::ServiceQuotaExceededException, message)
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::InternalServerException, message)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code.name(), self.message)
    }
}

impl std::error::Error for ApiError {}
