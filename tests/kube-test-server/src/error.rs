//! API errors, rendered as `metav1.Status` bodies with the reasons and codes the real API server uses.

use serde_json::{Value, json};

/// One field-level cause inside a `Status.details.causes` list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cause {
    /// Machine-readable reason, e.g. `FieldValueRequired`.
    pub reason: String,
    /// Human-readable message, e.g. `Required value`.
    pub message: String,
    /// Field path, e.g. `spec.tenant`.
    pub field: String,
}

impl Cause {
    /// Builds a cause from its three parts.
    pub fn new(reason: &str, field: &str, message: impl Into<String>) -> Self {
        Cause {
            reason: reason.to_string(),
            message: message.into(),
            field: field.to_string(),
        }
    }

    fn to_json(&self) -> Value {
        json!({"reason": self.reason, "message": self.message, "field": self.field})
    }
}

/// Which object an error is about, for `Status.details`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subject {
    /// API group (empty for core).
    pub group: String,
    /// Resource kind as the server reports it in details (the plural resource name).
    pub kind: String,
    /// Object name, if known.
    pub name: String,
}

impl Subject {
    /// `plural.group` or `plural` for the core group, as used in messages.
    pub fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.kind.clone()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }
}

/// An error answered by the server; each variant maps to one `Status.reason`.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 404 `NotFound`.
    #[error("{} \"{}\" not found", .0.qualified(), .0.name)]
    NotFound(Subject),
    /// 404 `NotFound` for a path that serves no resource.
    #[error("the server could not find the requested resource")]
    NoRoute,
    /// 409 `AlreadyExists`.
    #[error("{} \"{}\" already exists", .0.qualified(), .0.name)]
    AlreadyExists(Subject),
    /// 409 `Conflict` on a stale resourceVersion or failed precondition.
    #[error("Operation cannot be fulfilled on {} \"{}\": {}", .0.qualified(), .0.name, .1)]
    Conflict(Subject, String),
    /// 409 `Conflict` from server-side apply field ownership.
    #[error("{message}")]
    ApplyConflict {
        /// The object concerned.
        subject: Subject,
        /// Full message, `Apply failed with N conflicts: ...`.
        message: String,
        /// One `FieldManagerConflict` cause per conflicting field.
        causes: Vec<Cause>,
    },
    /// 422 `Invalid` with field causes.
    #[error("{}", invalid_message(.kind, .subject, .causes))]
    Invalid {
        /// Kind (e.g. `Widget`) used in the message.
        kind: String,
        /// The object concerned.
        subject: Subject,
        /// Field causes.
        causes: Vec<Cause>,
    },
    /// 422 `Invalid` without field causes (e.g. a failed json-patch `test`).
    #[error("{0}")]
    Unprocessable(String),
    /// 410 `Expired` (too old resourceVersion or continue token).
    #[error("{0}")]
    Expired(String),
    /// 403 `Forbidden` (e.g. new content in a terminating namespace).
    #[error("{0}")]
    Forbidden(String),
    /// 401 `Unauthorized`: the bearer token authenticates no one.
    #[error("Unauthorized")]
    Unauthorized,
    /// 405 `MethodNotAllowed`.
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    /// 400 `BadRequest`.
    #[error("{0}")]
    BadRequest(String),
    /// 415 `UnsupportedMediaType`.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 500 `InternalError`.
    #[error("Internal error occurred: {0}")]
    Internal(String),
    /// 504 `Timeout` (e.g. a resourceVersion from the future).
    #[error("{0}")]
    Timeout(String),
}

fn invalid_message(kind: &str, subject: &Subject, causes: &[Cause]) -> String {
    let lines: Vec<String> = causes
        .iter()
        .map(|c| format!("{}: {}", c.field, c.message))
        .collect();
    let joined = if lines.len() == 1 {
        lines[0].clone()
    } else {
        format!("[{}]", lines.join(", "))
    };
    let group = if subject.group.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}.{}", subject.group)
    };
    format!("{group} \"{}\" is invalid: {joined}", subject.name)
}

/// Result type of the server's layers.
pub type Result<T, E = ApiError> = std::result::Result<T, E>;

impl ApiError {
    /// HTTP status code.
    pub fn code(&self) -> u16 {
        match self {
            ApiError::NotFound(_) | ApiError::NoRoute => 404,
            ApiError::AlreadyExists(_)
            | ApiError::Conflict(..)
            | ApiError::ApplyConflict { .. } => 409,
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => 422,
            ApiError::Expired(_) => 410,
            ApiError::Forbidden(_) => 403,
            ApiError::Unauthorized => 401,
            ApiError::MethodNotAllowed => 405,
            ApiError::BadRequest(_) => 400,
            ApiError::UnsupportedMediaType(_) => 415,
            ApiError::Internal(_) => 500,
            ApiError::Timeout(_) => 504,
        }
    }

    /// `Status.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound(_) | ApiError::NoRoute => "NotFound",
            ApiError::AlreadyExists(_) => "AlreadyExists",
            ApiError::Conflict(..) | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Invalid { .. } | ApiError::Unprocessable(_) => "Invalid",
            ApiError::Expired(_) => "Expired",
            ApiError::Forbidden(_) => "Forbidden",
            ApiError::Unauthorized => "Unauthorized",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Internal(_) => "InternalError",
            ApiError::Timeout(_) => "Timeout",
        }
    }

    /// The full `metav1.Status` body.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code(),
        });
        let details = match self {
            ApiError::NotFound(s) | ApiError::AlreadyExists(s) | ApiError::Conflict(s, _) => {
                Some(details(s, &[]))
            }
            ApiError::ApplyConflict {
                subject, causes, ..
            } => Some(details(subject, causes)),
            ApiError::Invalid {
                kind,
                subject,
                causes,
            } => {
                let mut d = details(subject, causes);
                d["kind"] = json!(kind);
                Some(d)
            }
            _ => None,
        };
        if let Some(d) = details {
            status["details"] = d;
        }
        status
    }
}

fn details(subject: &Subject, causes: &[Cause]) -> Value {
    let mut d = json!({"name": subject.name, "kind": subject.kind});
    if !subject.group.is_empty() {
        d["group"] = json!(subject.group);
    }
    if !causes.is_empty() {
        d["causes"] = Value::Array(causes.iter().map(Cause::to_json).collect());
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widget(name: &str) -> Subject {
        Subject {
            group: "example.com".into(),
            kind: "widgets".into(),
            name: name.into(),
        }
    }

    #[test]
    fn not_found_status_matches_real_server_shape() {
        let s = ApiError::NotFound(widget("w1")).to_status();
        assert_eq!(s["code"], 404);
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["message"], "widgets.example.com \"w1\" not found");
        assert_eq!(s["details"]["group"], "example.com");
    }

    #[test]
    fn invalid_message_lists_multiple_causes_in_brackets() {
        let e = ApiError::Invalid {
            kind: "Widget".into(),
            subject: widget("w1"),
            causes: vec![
                Cause::new("FieldValueRequired", "spec.a", "Required value"),
                Cause::new("FieldValueInvalid", "spec.b", "Invalid value: 3"),
            ],
        };
        assert_eq!(
            e.to_string(),
            "Widget.example.com \"w1\" is invalid: [spec.a: Required value, spec.b: Invalid value: 3]"
        );
        let s = e.to_status();
        assert_eq!(s["code"], 422);
        assert_eq!(s["details"]["kind"], "Widget");
        assert_eq!(s["details"]["causes"][0]["field"], "spec.a");
    }
}
