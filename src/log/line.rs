//! A log line made of its spans' fields and the event's message, and the level filter of
//! `syncbridge.log_level`: plain functions, no tracing machinery and no PostgreSQL.
//!
//! `link{name=crm}` › `batch{seq=12}` › event "500 of 500 deliveries delivered, 0 failed"
//! reads `pg_syncbridge: link crm: batch 12: 500 of 500 deliveries delivered, 0 failed`.

use std::fmt;

/// The levels of `syncbridge.log_level`, least severe first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Debug = 0,
    Log = 1,
    Warning = 2,
}

impl Level {
    /// The setting's text: `debug`, `log` (or `info`), anything else `warning`.
    pub fn parse(text: &str) -> Self {
        match text.trim().to_ascii_lowercase().as_str() {
            "debug" => Self::Debug,
            "log" | "info" => Self::Log,
            _ => Self::Warning,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Log => "log",
            Self::Warning => "warning",
        }
    }

    /// tracing's DEBUG (and TRACE) is `debug`, INFO is `log`, WARN (and ERROR) is `warning`.
    pub fn of(level: &tracing::Level) -> Self {
        if *level >= tracing::Level::DEBUG {
            Self::Debug
        } else if *level == tracing::Level::INFO {
            Self::Log
        } else {
            Self::Warning
        }
    }

    /// Whether an event of this level is written under `threshold`.
    pub fn passes(self, threshold: Level) -> bool {
        self >= threshold
    }

    /// Whether a span of this level is kept under `threshold`: spans at `log` and above
    /// always (a warning needs its link), `debug` spans (requests) only at `debug`.
    pub fn span_passes(self, threshold: Level) -> bool {
        self.passes(threshold.min(Self::Log))
    }
}

/// The fields of a span or an event, in the order they were recorded.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Fields(pub Vec<(&'static str, String)>);

impl Fields {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    fn set(&mut self, name: &'static str, value: String) {
        match self.0.iter_mut().find(|(n, _)| *n == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }
}

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.set(field.name(), value.to_string());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        self.set(field.name(), format!("{value:?}"));
    }
}

/// What a span adds to the start of its events' lines, if anything: `link crm`, `batch 12`,
/// `pull`, `GET http://remote/crm`. A round (one pass of the worker loop) adds nothing, so
/// that lines read as they did before spans: `pg_syncbridge: link crm: ...`.
pub fn segment(span: &str, fields: &Fields) -> Option<String> {
    match span {
        "round" => None,
        "link" => Some(format!("link {}", fields.get("name")?)),
        "batch" => Some(format!("batch {}", fields.get("seq")?)),
        "pull" => Some("pull".to_string()),
        "request" => Some(format!("{} {}", fields.get("method")?, fields.get("url")?)),
        other => Some(match fields.0.first() {
            Some((_, value)) => format!("{other} {value}"),
            None => other.to_string(),
        }),
    }
}

/// The whole line: `pg_syncbridge: `, the spans' segments from the outermost in, the
/// event's message, then the event's other fields as `(key=value, ...)`.
pub fn format(segments: impl IntoIterator<Item = Option<String>>, event: &Fields) -> String {
    let mut line = String::from("pg_syncbridge: ");
    for segment in segments.into_iter().flatten() {
        line.push_str(&segment);
        line.push_str(": ");
    }
    line.push_str(event.get("message").unwrap_or(""));
    let extra: Vec<String> = event.0.iter().filter(|(n, _)| *n != "message").map(|(n, v)| format!("{n}={v}")).collect();
    if !extra.is_empty() {
        line.push_str(&format!(" ({})", extra.join(", ")));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&'static str, &str)]) -> Fields {
        Fields(pairs.iter().map(|(n, v)| (*n, v.to_string())).collect())
    }

    #[test]
    fn a_line_names_its_link_and_batch() {
        let segments = [
            segment("round", &fields(&[("n", "7")])),
            segment("link", &fields(&[("name", "crm")])),
            segment("batch", &fields(&[("seq", "12"), ("records", "500")])),
        ];
        let event = fields(&[("message", "500 of 500 deliveries delivered, 0 failed")]);
        assert_eq!(
            format(segments, &event),
            "pg_syncbridge: link crm: batch 12: 500 of 500 deliveries delivered, 0 failed"
        );
    }

    #[test]
    fn lines_outside_a_link_keep_todays_wording() {
        let event = fields(&[("message", "pruned 1 events older than 60 minutes")]);
        assert_eq!(
            format([segment("round", &fields(&[("n", "3")]))], &event),
            "pg_syncbridge: pruned 1 events older than 60 minutes"
        );
        let quarantined = fields(&[("message", "record 1 quarantined: 4 hops within 60 s")]);
        assert_eq!(
            format([segment("link", &fields(&[("name", "stamped")]))], &quarantined),
            "pg_syncbridge: link stamped: record 1 quarantined: 4 hops within 60 s"
        );
    }

    #[test]
    fn requests_and_pulls_and_event_fields() {
        let segments = [
            segment("link", &fields(&[("name", "crm")])),
            segment("pull", &Fields::default()),
            segment("request", &fields(&[("method", "GET"), ("url", "http://r/crm")])),
        ];
        let event = fields(&[("message", "HTTP 200 in 3 ms"), ("bytes", "120")]);
        assert_eq!(
            format(segments, &event),
            "pg_syncbridge: link crm: pull: GET http://r/crm: HTTP 200 in 3 ms (bytes=120)"
        );
        assert_eq!(segment("stage", &fields(&[("n", "2")])).as_deref(), Some("stage 2"));
        assert_eq!(segment("link", &Fields::default()), None, "a link span without its name adds nothing");
    }

    #[test]
    fn a_field_recorded_again_replaces_its_value() {
        let mut f = fields(&[("seq", "1")]);
        f.set("seq", "2".into());
        assert_eq!(f, fields(&[("seq", "2")]));
    }

    #[test]
    fn levels_filter_events_and_spans() {
        assert_eq!(Level::parse("DEBUG"), Level::Debug);
        assert_eq!(Level::parse("info"), Level::Log);
        assert_eq!(Level::parse("log"), Level::Log);
        assert_eq!(Level::parse("nonsense"), Level::Warning);
        assert_eq!(Level::of(&tracing::Level::TRACE), Level::Debug);
        assert_eq!(Level::of(&tracing::Level::DEBUG), Level::Debug);
        assert_eq!(Level::of(&tracing::Level::INFO), Level::Log);
        assert_eq!(Level::of(&tracing::Level::WARN), Level::Warning);
        assert_eq!(Level::of(&tracing::Level::ERROR), Level::Warning);
        assert!(Level::Warning.passes(Level::Warning));
        assert!(!Level::Log.passes(Level::Warning));
        assert!(!Level::Debug.passes(Level::Log));
        assert!(Level::Debug.passes(Level::Debug));
        // A warning still names its link: link spans (log) live at every threshold.
        assert!(Level::Log.span_passes(Level::Warning));
        assert!(!Level::Debug.span_passes(Level::Warning));
        assert!(Level::Debug.span_passes(Level::Debug));
    }
}
