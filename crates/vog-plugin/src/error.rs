//! Errors across the boundary: a [`vog_core::Error`] flattened into a status, two strings and three
//! numbers on the plugin side, and rebuilt into the same variant on the host side.

use std::path::PathBuf;

use vog_core::Error;

use crate::status;

/// An error in transit: what `last_error` reports, owned.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnedErrorInfo {
    /// Status code (see [`status`]).
    pub status: i32,
    /// Message.
    pub message: String,
    /// File or backend concerned.
    pub subject: String,
    /// Numeric details.
    pub detail: [u64; 3],
}

const WHAT: [&str; 2] = ["logits", "gradient"];

impl OwnedErrorInfo {
    /// Flattens a core error.
    pub fn from_error(e: &Error) -> Self {
        let plain = |status: i32, message: String| OwnedErrorInfo {
            status,
            message,
            ..Default::default()
        };
        match e {
            Error::Io {
                path,
                error: source,
            } => OwnedErrorInfo {
                status: status::IO,
                message: source.to_string(),
                subject: path.display().to_string(),
                detail: [0; 3],
            },
            Error::Checkpoint { path, message } => OwnedErrorInfo {
                status: status::CHECKPOINT,
                message: message.clone(),
                subject: path.display().to_string(),
                detail: [0; 3],
            },
            Error::Shape(m) => plain(status::SHAPE, m.clone()),
            Error::ClassOutOfRange {
                class,
                num_classes,
                row,
            } => OwnedErrorInfo {
                status: status::CLASS_OUT_OF_RANGE,
                message: e.to_string(),
                subject: String::new(),
                detail: [u64::from(*class), *num_classes as u64, *row as u64],
            },
            Error::NonFinite { what, row, element } => OwnedErrorInfo {
                status: status::NON_FINITE,
                message: e.to_string(),
                subject: String::new(),
                detail: [
                    *row as u64,
                    *element as u64,
                    WHAT.iter().position(|w| w == what).unwrap_or(2) as u64,
                ],
            },
            Error::Config(m) => plain(status::CONFIG, m.clone()),
            Error::Backend { backend, message } => OwnedErrorInfo {
                status: status::BACKEND,
                message: message.clone(),
                subject: backend.clone(),
                detail: [0; 3],
            },
            Error::Invalid(m) => plain(status::INVALID, m.clone()),
        }
    }

    /// Describes a panic caught at the boundary.
    pub fn from_panic(function: &str, payload: &(dyn std::any::Any + Send)) -> Self {
        let what = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic payload".into());
        OwnedErrorInfo {
            status: status::PANIC,
            message: format!("panicked in `{function}`: {what}"),
            subject: String::new(),
            detail: [0; 3],
        }
    }
}

/// Rebuilds the core error a plugin reported. `name` and `path` identify the plugin; they appear
/// in panics and backend-specific failures, whose messages would otherwise not say where they
/// came from. Errors about checkpoints, shapes, classes and values come back exactly as the
/// backend raised them, so a plugin and its in-process build report the same errors.
pub fn error_from_info(info: OwnedErrorInfo, name: &str, path: &str) -> Error {
    let OwnedErrorInfo {
        status: code,
        message,
        subject,
        detail,
    } = info;
    let backend = if subject.is_empty() {
        name.to_string()
    } else {
        subject.clone()
    };
    match code {
        status::IO => Error::Io {
            path: PathBuf::from(subject),
            error: std::io::Error::other(message),
        },
        status::CHECKPOINT => Error::Checkpoint {
            path: PathBuf::from(subject),
            message,
        },
        status::SHAPE => Error::Shape(message),
        status::CLASS_OUT_OF_RANGE => Error::ClassOutOfRange {
            class: detail[0] as u32,
            num_classes: detail[1] as usize,
            row: detail[2] as usize,
        },
        status::NON_FINITE => Error::NonFinite {
            what: WHAT.get(detail[2] as usize).copied().unwrap_or("value"),
            row: detail[0] as usize,
            element: detail[1] as usize,
        },
        status::CONFIG => Error::Config(message),
        status::INVALID => Error::Invalid(message),
        status::BACKEND | status::PANIC => Error::Backend {
            backend,
            message: format!("{message} (plugin {path})"),
        },
        other => Error::Backend {
            backend,
            message: format!("status {other}: {message} (plugin {path})"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_survives_the_round_trip() {
        let cases = vec![
            Error::Checkpoint {
                path: "a/b.onnx".into(),
                message: "truncated".into(),
            },
            Error::Shape("expects [N, 3]".into()),
            Error::ClassOutOfRange {
                class: 7,
                num_classes: 5,
                row: 3,
            },
            Error::NonFinite {
                what: "gradient",
                row: 2,
                element: 9,
            },
            Error::NonFinite {
                what: "logits",
                row: 0,
                element: 1,
            },
            Error::Config("unknown field `x`".into()),
            Error::Invalid("bad".into()),
        ];
        for e in cases {
            let back = error_from_info(OwnedErrorInfo::from_error(&e), "p", "/x/p.so");
            assert_eq!(back.to_string(), e.to_string());
        }
        let io = Error::Io {
            path: "x.bin".into(),
            error: std::io::Error::other("denied"),
        };
        assert_eq!(
            error_from_info(OwnedErrorInfo::from_error(&io), "p", "/x/p.so").to_string(),
            "x.bin: denied"
        );
        let b = Error::Backend {
            backend: "faulty".into(),
            message: "nope".into(),
        };
        let back = error_from_info(
            OwnedErrorInfo::from_error(&b),
            "faulty",
            "/x/libvog_backend_faulty.so",
        );
        assert_eq!(
            back.to_string(),
            "faulty backend: nope (plugin /x/libvog_backend_faulty.so)"
        );
    }

    #[test]
    fn panics_name_the_function_and_payload() {
        let payload: Box<dyn std::any::Any + Send> = Box::new("boom");
        let info = OwnedErrorInfo::from_panic("load", payload.as_ref());
        assert_eq!(info.status, status::PANIC);
        assert_eq!(info.message, "panicked in `load`: boom");
    }
}
