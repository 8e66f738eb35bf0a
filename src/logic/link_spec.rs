//! What a link is allowed to say: names of directions, loop guards, contention policies and
//! schedules, link names and URLs. Parsing here turns user text into typed settings or into a
//! [`SpecError`] that says what was wrong and what to write instead.

use std::fmt;
use url::Url;

/// The class of a user error; the SQL layer maps each to a SQLSTATE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 22023 invalid_parameter_value
    InvalidValue,
    /// 42602 invalid_name
    InvalidName,
    /// 42703 undefined_column
    UndefinedColumn,
    /// 42704 undefined_object
    UndefinedObject,
    /// 42710 duplicate_object
    DuplicateObject,
    /// 42P16 invalid_table_definition
    InvalidTable,
    /// 55000 object_not_in_prerequisite_state
    WrongState,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub kind: ErrorKind,
    pub message: String,
    pub hint: String,
}

impl SpecError {
    pub fn new(kind: ErrorKind, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self { kind, message: message.into(), hint: hint.into() }
    }
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (hint: {})", self.message, self.hint)
    }
}

/// Which way records travel on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Outbound,
    Inbound,
    Both,
}

impl Direction {
    pub const NAMES: &'static [&'static str] = &["outbound", "inbound", "both"];

    pub fn parse(text: &str) -> Result<Self, SpecError> {
        match text {
            "outbound" => Ok(Self::Outbound),
            "inbound" => Ok(Self::Inbound),
            "both" => Ok(Self::Both),
            other => Err(unknown("direction", other, Self::NAMES)),
        }
    }

    /// Local edits are captured and sent.
    pub fn sends(self) -> bool {
        matches!(self, Self::Outbound | Self::Both)
    }

    /// Remote records are applied locally.
    pub fn receives(self) -> bool {
        matches!(self, Self::Inbound | Self::Both)
    }
}

/// The loop guards of SPEC §2; a link combines any of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Guard {
    Echo,
    Fingerprint,
    Context,
    LastTouch,
    Ownership,
    Reflect,
    Detector,
}

impl Guard {
    pub const ALL: [Guard; 7] = [
        Guard::Echo,
        Guard::Fingerprint,
        Guard::Context,
        Guard::LastTouch,
        Guard::Ownership,
        Guard::Reflect,
        Guard::Detector,
    ];
    pub const NAMES: &'static [&'static str] =
        &["echo", "fingerprint", "context", "last_touch", "ownership", "reflect", "detector"];

    pub fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    pub fn parse(text: &str) -> Result<Self, SpecError> {
        Self::NAMES
            .iter()
            .position(|n| *n == text)
            .map(|i| Self::ALL[i])
            .ok_or_else(|| unknown("loop guard", text, Self::NAMES))
    }

    /// Parses a list of guard names, dropping repeats and keeping the canonical order.
    pub fn parse_list<S: AsRef<str>>(names: &[S]) -> Result<Vec<Self>, SpecError> {
        let mut guards = names.iter().map(|n| Self::parse(n.as_ref().trim())).collect::<Result<Vec<_>, _>>()?;
        guards.sort();
        guards.dedup();
        Ok(guards)
    }
}

/// Which system a decision favours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Local,
    Remote,
}

impl Side {
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        match text {
            "local" => Ok(Self::Local),
            "remote" => Ok(Self::Remote),
            other => Err(unknown("owner", other, &["local", "remote"])),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Remote => "remote",
        }
    }
}

/// The contention policies of SPEC §3.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contention {
    LastWriteWins,
    NewerWins,
    SystemOfRecord(Side),
    RecordOwner,
    Merge,
}

impl Contention {
    pub const NAMES: &'static [&'static str] = &[
        "last_write_wins",
        "newer_wins",
        "system_of_record:local",
        "system_of_record:remote",
        "record_owner",
        "merge",
    ];

    pub fn parse(text: &str) -> Result<Self, SpecError> {
        match text {
            "last_write_wins" => Ok(Self::LastWriteWins),
            "newer_wins" => Ok(Self::NewerWins),
            "system_of_record:local" => Ok(Self::SystemOfRecord(Side::Local)),
            "system_of_record:remote" => Ok(Self::SystemOfRecord(Side::Remote)),
            "record_owner" => Ok(Self::RecordOwner),
            "merge" => Ok(Self::Merge),
            other => Err(unknown("contention policy", other, Self::NAMES)),
        }
    }
}

/// When outbound work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// Woken right after a commit that enqueued work.
    Realtime,
    /// Every N seconds.
    Every(u32),
}

impl Schedule {
    /// Accepts `realtime`, `every N seconds`, `N seconds`, `Ns` or `N`; N from 1 to 86400.
    pub fn parse(text: &str) -> Result<Self, SpecError> {
        let t = text.trim().to_ascii_lowercase();
        if t == "realtime" {
            return Ok(Self::Realtime);
        }
        let t = t.strip_prefix("every").unwrap_or(&t).trim();
        let digits = t
            .strip_suffix("seconds")
            .or_else(|| t.strip_suffix("second"))
            .or_else(|| t.strip_suffix("sec"))
            .or_else(|| t.strip_suffix('s'))
            .unwrap_or(t)
            .trim();
        match digits.parse::<u32>() {
            Ok(n) if (1..=86_400).contains(&n) => Ok(Self::Every(n)),
            _ => Err(SpecError::new(
                ErrorKind::InvalidValue,
                format!("invalid schedule \"{text}\""),
                "Use 'realtime' or 'every N seconds' with N from 1 to 86400.",
            )),
        }
    }

    /// The normalised text stored in the catalog.
    pub fn render(self) -> String {
        match self {
            Self::Realtime => "realtime".to_string(),
            Self::Every(n) => format!("every {n} seconds"),
        }
    }
}

/// Reserved last-touch value that means "a user edit"; no link may take this name.
pub const LOCAL_TOUCH: &str = "local";

/// Link names travel in the origin flag and in trigger names: short, plain identifiers.
pub fn validate_link_name(name: &str) -> Result<(), SpecError> {
    let ok_first = name.chars().next().is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    let ok_rest = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if name.is_empty() || name.len() > 40 || !ok_first || !ok_rest {
        return Err(SpecError::new(
            ErrorKind::InvalidName,
            format!("invalid link name \"{name}\""),
            "A link name has 1 to 40 characters: lower-case letters, digits and underscores, not starting with a digit.",
        ));
    }
    if name == LOCAL_TOUCH {
        return Err(SpecError::new(
            ErrorKind::InvalidName,
            "the link name \"local\" is reserved",
            "\"local\" marks user edits in _sync_last_touch; choose another name.",
        ));
    }
    Ok(())
}

/// Checks a remote base URL and returns it without a trailing slash.
pub fn normalize_base_url(url: &str) -> Result<String, SpecError> {
    check_http_url("remote_base_url", url).map(|u| u.trim_end_matches('/').to_string())
}

/// Checks a link's `batch_url`: an absolute URL checked like the base URL, or a path below
/// the base URL (`batch`, `/v1/batch`), never another scheme.
pub fn check_batch_url(url: &str) -> Result<(), SpecError> {
    let has_scheme = url.split_once(':').is_some_and(|(scheme, _)| {
        !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    });
    if has_scheme || url.starts_with("//") {
        return check_http_url("batch_url", url).map(|_| ());
    }
    if url.is_empty() || url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(SpecError::new(
            ErrorKind::InvalidValue,
            format!("invalid batch_url \"{}\"", url.escape_debug()),
            "Give a path below the link's base URL such as 'batch', or an absolute http:// or https:// URL.",
        ));
    }
    Ok(())
}

/// Checks an absolute http(s) URL given as setting `what`; returns it unchanged.
fn check_http_url<'a>(what: &str, url: &'a str) -> Result<&'a str, SpecError> {
    let shown = redact_url(url);
    let bad = |why: &str| {
        SpecError::new(
            ErrorKind::InvalidValue,
            format!("invalid {what} \"{}\": {why}", shown.escape_debug()),
            "Give an absolute http:// or https:// URL such as 'https://api.example.com/v1'; put credentials in syncbridge.set_secret, not in the URL.",
        )
    };
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(bad("the scheme must be http or https"));
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains white space"));
    }
    // WHATWG parsing reads "https:///v1" as the host "v1": an empty authority is refused first.
    let authority = url.split_once("://").map_or("", |(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""));
    if authority.is_empty() {
        return Err(bad("it has no host"));
    }
    // The url crate parses (WHATWG rules, as browsers and reqwest do); the text is kept as
    // the user wrote it.
    let parsed = Url::parse(url).map_err(|e| match e {
        url::ParseError::EmptyHost => bad("it has no host"),
        url::ParseError::InvalidPort => bad("the port is not a number from 1 to 65535"),
        url::ParseError::InvalidIpv6Address => bad("the IPv6 address is not valid"),
        other => bad(&other.to_string()),
    })?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(bad("it contains credentials"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(bad("it has no host"));
    }
    if parsed.port() == Some(0) {
        return Err(bad("the port is not a number from 1 to 65535"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(bad("it has a query or fragment"));
    }
    Ok(url)
}

/// Checks a header name (`auth_header`): an HTTP token, so no CR, LF, NUL, space or colon
/// can split or add a header.
pub fn check_header_name(key: &str, name: &str) -> Result<(), SpecError> {
    let token = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    if name.is_empty() || !name.chars().all(token) {
        return Err(SpecError::new(
            ErrorKind::InvalidValue,
            format!("invalid header name \"{}\" for link setting \"{key}\"", name.escape_debug()),
            "A header name is letters, digits and !#$%&'*+-.^_`|~ only (no spaces, colons or line breaks), such as 'X-Api-Key'.",
        ));
    }
    Ok(())
}

/// The URL with any `user:password@` part replaced by `***@`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    // Textual, not through the url crate: it re-serialises (percent-encodes) what surrounds
    // the credentials, and this runs on any text an error may hold, URL or not.
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    match rest[..end].rfind('@') {
        Some(at) if !scheme.is_empty() => format!("{scheme}://***{}", &rest[at..]),
        Some(at) => format!("***{}", &rest[at..]),
        None => url.to_string(),
    }
}

/// A collection is a path below the base URL: `customers`, `v2/accounts`.
pub fn normalize_collection(collection: &str) -> Result<String, SpecError> {
    let trimmed = collection.trim_matches('/');
    let ok = !trimmed.is_empty()
        && trimmed.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg.chars().all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c))
        });
    if !ok {
        return Err(SpecError::new(
            ErrorKind::InvalidValue,
            format!("invalid remote_collection \"{collection}\""),
            "A collection is one or more URL path segments of letters, digits, '-', '_', '.' or '~', such as 'customers' or 'v2/accounts'.",
        ));
    }
    Ok(trimmed.to_string())
}

/// Settings that map to a column of the link itself.
pub const CORE_SETTINGS: &[&str] = &[
    "direction",
    "loop_guards",
    "contention",
    "schedule",
    "remote_base_url",
    "remote_collection",
    "remote_key_field",
    "track_columns",
];

fn unknown(what: &str, given: &str, valid: &[&str]) -> SpecError {
    SpecError::new(
        ErrorKind::InvalidValue,
        format!("unknown {what} \"{given}\""),
        format!("Valid values: {}.", valid.join(", ")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directions() {
        assert_eq!(Direction::parse("both"), Ok(Direction::Both));
        assert!(Direction::Both.sends() && Direction::Both.receives());
        assert!(!Direction::Inbound.sends());
        let err = Direction::parse("sideways").unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidValue);
        assert!(err.hint.contains("outbound, inbound, both"), "{}", err.hint);
    }

    #[test]
    fn guard_lists_are_deduplicated_and_ordered() {
        let g = Guard::parse_list(&["echo", "context", "echo", " fingerprint"]).unwrap();
        assert_eq!(g, vec![Guard::Echo, Guard::Fingerprint, Guard::Context]);
        assert_eq!(Guard::LastTouch.name(), "last_touch");
        let err = Guard::parse_list(&["echo", "magic"]).unwrap_err();
        assert_eq!(err.message, "unknown loop guard \"magic\"");
        assert!(err.hint.contains("detector"));
    }

    #[test]
    fn contention_names() {
        for name in Contention::NAMES {
            assert!(Contention::parse(name).is_ok(), "{name}");
        }
        assert_eq!(Contention::parse("system_of_record:remote"), Ok(Contention::SystemOfRecord(Side::Remote)));
        assert!(Contention::parse("system_of_record").is_err());
    }

    #[test]
    fn schedules() {
        assert_eq!(Schedule::parse("realtime"), Ok(Schedule::Realtime));
        assert_eq!(Schedule::parse("every 30 seconds"), Ok(Schedule::Every(30)));
        assert_eq!(Schedule::parse("30s"), Ok(Schedule::Every(30)));
        assert_eq!(Schedule::parse("45"), Ok(Schedule::Every(45)));
        assert_eq!(Schedule::Every(5).render(), "every 5 seconds");
        for bad in ["", "0", "every -1 seconds", "soon", "100000"] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn link_names() {
        assert!(validate_link_name("crm_accounts").is_ok());
        for bad in ["", "1abc", "Crm", "a b", "a-b", "local", &"x".repeat(41)] {
            assert!(validate_link_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn urls() {
        assert_eq!(normalize_base_url("https://api.example.com/v1/").unwrap(), "https://api.example.com/v1");
        assert_eq!(normalize_base_url("http://127.0.0.1:3000").unwrap(), "http://127.0.0.1:3000");
        assert_eq!(normalize_base_url("http://[::1]:8080/x").unwrap(), "http://[::1]:8080/x");
        for bad in [
            "ftp://x",
            "api.example.com",
            "http://",
            "http://user:pw@host/",
            "http://host:99999",
            "http://host:abc",
            "http://ho st/",
            "http://host/?q=1",
        ] {
            let err = normalize_base_url(bad).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidValue, "{bad}");
        }
    }

    #[test]
    fn credentials_never_appear_in_errors() {
        let err = normalize_base_url("https://admin:s3cret@api.example.com/v1").unwrap_err();
        assert!(!err.message.contains("s3cret") && err.message.contains("***@api.example.com"), "{}", err.message);
        assert_eq!(redact_url("http://u:p@h:1/x@y"), "http://***@h:1/x@y");
        assert_eq!(redact_url("http://h/x"), "http://h/x");
    }

    #[test]
    fn batch_urls_are_checked_like_the_base_url() {
        for ok in ["batch", "/v1/batch", "bulk/items", "http://127.0.0.1:3000/batch", "https://h/b"] {
            assert!(crate::logic::link_settings::check("batch_url", &serde_json::json!(ok)).is_ok(), "{ok}");
        }
        for bad in [
            "file:///etc/passwd",
            "gopher://h/x",
            "http://user:pw@h/batch",
            "//other.example/batch",
            "javascript:alert(1)",
            "http://h:0/x",
            "ba tch",
            "batch\r\nX: y",
            "",
        ] {
            let err = crate::logic::link_settings::check("batch_url", &serde_json::json!(bad)).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidValue, "{bad}");
            assert!(err.message.contains("batch_url") && !err.message.contains("pw@"), "{}", err.message);
        }
    }

    #[test]
    fn header_names_are_tokens() {
        assert!(crate::logic::link_settings::check("auth_header", &serde_json::json!("X-Api-Key")).is_ok());
        let err = crate::logic::link_settings::check("auth_header", &serde_json::json!("")).unwrap_err();
        assert_eq!(err.hint, "\"auth_header\" takes a non-empty string, or null to remove it.");
        for bad in ["X-Api-Key\r\nX-Evil: 1", "X\nY", "X\0Y", "X Y", "X:"] {
            let err = crate::logic::link_settings::check("auth_header", &serde_json::json!(bad)).unwrap_err();
            assert_eq!(err.kind, ErrorKind::InvalidValue, "{bad:?}");
            assert!(!err.message.contains('\n') && err.hint.contains("header name"), "{}", err.message);
        }
    }

    #[test]
    fn collections() {
        assert_eq!(normalize_collection("/customers/").unwrap(), "customers");
        assert_eq!(normalize_collection("v2/accounts").unwrap(), "v2/accounts");
        for bad in ["", "/", "a//b", "../etc", "a b", "a?b"] {
            assert!(normalize_collection(bad).is_err(), "{bad}");
        }
    }
}
