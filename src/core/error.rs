//! The one error type of the pure core: a client's mistake, with the field it
//! concerns. The edge maps it to HTTP in one place (`edge::error`).

use std::borrow::Cow;

/// Serializable, so it crosses the Durable Object boundary as itself (as one
/// flat record, [`Wire`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[serde(into = "Wire", from = "Wire")]
pub enum Error {
    /// 400: the input is malformed or breaks a rule.
    #[error("{message}")]
    Invalid {
        field: Option<Cow<'static, str>>,
        message: String,
    },
    /// 413: the request body is over the limit.
    #[error("{message}")]
    TooLarge { message: String },
    /// 409: the input is valid but clashes with what is stored.
    #[error("{message}")]
    Conflict {
        field: Cow<'static, str>,
        message: String,
    },
    /// 404: the thing asked about does not exist.
    #[error("{message}")]
    NotFound { message: String },
    /// 429: a stored limit is reached (a visitor's or person's event cap);
    /// waiting does not help, so no `Retry-After`.
    #[error("{message}")]
    AtCapacity { message: String },
    /// 401: secure mode, and a credential in the body (`user_hash`,
    /// `email_hash`) is missing or does not vouch for what it must.
    #[error("{message}")]
    Unverified {
        field: Cow<'static, str>,
        message: String,
    },
    /// 403: a browser write another site's page made (`core::cross_site`).
    #[error("{message}")]
    CrossSite {
        field: Cow<'static, str>,
        message: String,
    },
    /// 415: a content type only a form sends, on a JSON endpoint.
    #[error("{message}")]
    MediaType { message: String },
}

/// An [`Error`] on the wire: one record of its kind, field and message, so
/// the wasm carries one reader for it rather than one per variant.
#[derive(serde::Serialize, serde::Deserialize)]
struct Wire {
    kind: Kind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    field: Option<Cow<'static, str>>,
    message: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    Invalid,
    TooLarge,
    Conflict,
    NotFound,
    AtCapacity,
    Unverified,
    CrossSite,
    MediaType,
}

impl From<Error> for Wire {
    fn from(e: Error) -> Wire {
        let (kind, field, message) = match e {
            Error::Invalid { field, message } => (Kind::Invalid, field, message),
            Error::TooLarge { message } => (Kind::TooLarge, None, message),
            Error::Conflict { field, message } => (Kind::Conflict, Some(field), message),
            Error::NotFound { message } => (Kind::NotFound, None, message),
            Error::AtCapacity { message } => (Kind::AtCapacity, None, message),
            Error::Unverified { field, message } => (Kind::Unverified, Some(field), message),
            Error::CrossSite { field, message } => (Kind::CrossSite, Some(field), message),
            Error::MediaType { message } => (Kind::MediaType, None, message),
        };
        Wire {
            kind,
            field,
            message,
        }
    }
}

impl From<Wire> for Error {
    fn from(
        Wire {
            kind,
            field,
            message,
        }: Wire,
    ) -> Error {
        match kind {
            Kind::Invalid => Error::Invalid { field, message },
            Kind::TooLarge => Error::TooLarge { message },
            Kind::Conflict => Error::Conflict {
                field: field.unwrap_or_default(),
                message,
            },
            Kind::NotFound => Error::NotFound { message },
            Kind::AtCapacity => Error::AtCapacity { message },
            Kind::Unverified => Error::Unverified {
                field: field.unwrap_or_default(),
                message,
            },
            Kind::CrossSite => Error::CrossSite {
                field: field.unwrap_or_default(),
                message,
            },
            Kind::MediaType => Error::MediaType { message },
        }
    }
}

impl Error {
    pub fn invalid(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        let field = field.into();
        let message = message.into();
        Error::Invalid {
            message: format!("{field}: {message}"),
            field: Some(field),
        }
    }

    pub fn bad_body(message: impl Into<String>) -> Self {
        Error::Invalid {
            field: None,
            message: message.into(),
        }
    }

    pub fn conflict(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Error::Conflict {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Error::NotFound {
            message: message.into(),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            Error::Invalid { .. } => 400,
            Error::TooLarge { .. } => 413,
            Error::Conflict { .. } => 409,
            Error::NotFound { .. } => 404,
            Error::AtCapacity { .. } => 429,
            Error::Unverified { .. } => 401,
            Error::CrossSite { .. } => 403,
            Error::MediaType { .. } => 415,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Error::Invalid { .. } => "invalid",
            Error::TooLarge { .. } => "too_large",
            Error::Conflict { .. } => "conflict",
            Error::NotFound { .. } => "not_found",
            Error::AtCapacity { .. } => "at_capacity",
            Error::Unverified { .. } => "unauthorized",
            Error::CrossSite { .. } => "cross_site",
            Error::MediaType { .. } => "unsupported_media_type",
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            Error::Invalid { field, .. } => field.as_deref(),
            Error::Conflict { field, .. }
            | Error::Unverified { field, .. }
            | Error::CrossSite { field, .. } => Some(field),
            Error::MediaType { .. } => Some("content-type"),
            Error::TooLarge { .. } | Error::NotFound { .. } | Error::AtCapacity { .. } => None,
        }
    }
}
