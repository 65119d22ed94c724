//! Plugin-side logging: a `tracing` subscriber that forwards events to the host's [`VogLogger`].

use std::fmt::Write as _;

use tracing_core::field::{Field, Visit};
use tracing_core::span::{Attributes, Id, Record};
use tracing_core::{Event, Level, Metadata, Subscriber};

use crate::{VogLevel, VogLogger, VogStr};

/// `tracing` level → ABI level (1 error … 5 trace).
pub fn level_to_u32(level: &Level) -> VogLevel {
    match *level {
        Level::ERROR => 1,
        Level::WARN => 2,
        Level::INFO => 3,
        Level::DEBUG => 4,
        Level::TRACE => 5,
    }
}

/// ABI level → `tracing` level (unknown values are `TRACE`).
pub fn level_from_u32(level: VogLevel) -> Level {
    match level {
        1 => Level::ERROR,
        2 => Level::WARN,
        3 => Level::INFO,
        4 => Level::DEBUG,
        _ => Level::TRACE,
    }
}

/// Forwards the plugin's `tracing` events to the host.
pub(crate) struct HostSubscriber {
    logger: VogLogger,
}

// SAFETY: the ABI (ownership rule 8) requires the host's logger context and callbacks to be
// usable from any thread for the life of the process; the subscriber only copies the pointers.
unsafe impl Send for HostSubscriber {}
// SAFETY: as above; the subscriber has no interior state of its own.
unsafe impl Sync for HostSubscriber {}

impl HostSubscriber {
    pub(crate) fn new(logger: VogLogger) -> Self {
        HostSubscriber { logger }
    }
}

struct Message(String);

impl Visit for Message {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.0, "{value:?}");
        } else {
            let sep = if self.0.is_empty() { "" } else { " " };
            let _ = write!(self.0, "{sep}{}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0.push_str(value);
        } else {
            let sep = if self.0.is_empty() { "" } else { " " };
            let _ = write!(self.0, "{sep}{}={value}", field.name());
        }
    }
}

impl Subscriber for HostSubscriber {
    fn enabled(&self, metadata: &Metadata<'_>) -> bool {
        match self.logger.enabled {
            // SAFETY: rule 8: the callback and context are valid for the life of the process; the
            // target string is borrowed for the call only.
            Some(f) => unsafe {
                f(
                    self.logger.context,
                    level_to_u32(metadata.level()),
                    VogStr::new(metadata.target()),
                )
            },
            None => false,
        }
    }

    fn new_span(&self, _span: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }

    fn record(&self, _span: &Id, _values: &Record<'_>) {}

    fn record_follows_from(&self, _span: &Id, _follows: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let Some(log) = self.logger.log else { return };
        let mut message = Message(String::new());
        event.record(&mut message);
        let meta = event.metadata();
        // SAFETY: rule 8, as in `enabled`; both strings are borrowed for the call only.
        unsafe {
            log(
                self.logger.context,
                level_to_u32(meta.level()),
                VogStr::new(meta.target()),
                VogStr::new(&message.0),
            )
        };
    }

    fn enter(&self, _span: &Id) {}

    fn exit(&self, _span: &Id) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_round_trip() {
        for l in [
            Level::ERROR,
            Level::WARN,
            Level::INFO,
            Level::DEBUG,
            Level::TRACE,
        ] {
            assert_eq!(level_from_u32(level_to_u32(&l)), l);
        }
    }
}
