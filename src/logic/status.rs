//! The outcome of one record in one direction (SPEC §1, sync events): what `syncbridge.events`
//! records, and what the guards read back as a record's last status.

/// An event status. Stored as its name (`name`), read back with `parse`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Delivered,
    Ignored,
    Blocked,
    Failed,
    Conflict,
    Quarantined,
}

impl Status {
    pub const ALL: [Status; 6] =
        [Status::Delivered, Status::Ignored, Status::Blocked, Status::Failed, Status::Conflict, Status::Quarantined];

    /// The name stored in `syncbridge.events.status`.
    pub fn name(self) -> &'static str {
        match self {
            Status::Delivered => "delivered",
            Status::Ignored => "ignored",
            Status::Blocked => "blocked",
            Status::Failed => "failed",
            Status::Conflict => "conflict",
            Status::Quarantined => "quarantined",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.name() == text)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.name()), Some(s));
        }
        assert_eq!(Status::parse("lost"), None);
    }
}
