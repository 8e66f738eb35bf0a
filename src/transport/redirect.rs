//! Redirects, followed by hand (the reqwest client follows none): only to the same origin,
//! at most [`MAX_HOPS`] of them, with the method and body the status calls for. A redirect to
//! another origin is refused, so neither a configured header nor a body ever reaches it.

use super::http::Method;
use crate::logic::link_spec::redact_url;
use crate::logic::reach;
use url::Url;

pub const MAX_HOPS: usize = 5;

/// What to do with a redirect answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Ask again there, with this method, keeping the body or not.
    Follow { url: Url, method: Method, keep_body: bool },
    /// Do not follow; the reason names the `Location` (without credentials).
    Refuse(String),
}

/// Whether `status` is a redirect this client follows.
pub fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// The next step after `status` with `location`, for a request of `method` to `from` that
/// was redirected `hops` times before. 303 turns every method into GET without a body, and
/// 301 and 302 turn POST into GET (as browsers and RFC 9110 §15.4 allow); 307 and 308 keep
/// method and body.
pub fn step(status: u16, location: &str, from: &Url, method: Method, hops: usize) -> Step {
    let shown = redact_url(location.trim());
    let Ok(url) = from.join(location.trim()) else {
        return Step::Refuse(format!("HTTP {status} redirect to an invalid Location \"{shown}\""));
    };
    if !reach::same_origin(from, &url) {
        return Step::Refuse(format!(
            "HTTP {status} redirect to another origin not followed: Location \"{}\"; point the link at the new address",
            redact_url(url.as_str())
        ));
    }
    if hops >= MAX_HOPS {
        return Step::Refuse(format!(
            "more than {MAX_HOPS} redirects, the last (HTTP {status}) to \"{}\"",
            redact_url(url.as_str())
        ));
    }
    let to_get = status == 303 || (matches!(status, 301 | 302) && method == Method::Post);
    if to_get {
        Step::Follow { url, method: Method::Get, keep_body: false }
    } else {
        Step::Follow { url, method, keep_body: true }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from() -> Url {
        Url::parse("http://127.0.0.1:7000/v1/items/5").unwrap()
    }

    fn follows(status: u16, location: &str, method: Method) -> (String, Method, bool) {
        match step(status, location, &from(), method, 0) {
            Step::Follow { url, method, keep_body } => (url.to_string(), method, keep_body),
            Step::Refuse(why) => panic!("refused: {why}"),
        }
    }

    #[test]
    fn same_origin_redirects_keep_or_drop_the_body_as_the_status_says() {
        let at = "http://127.0.0.1:7000/v2/items/5".to_string();
        assert_eq!(follows(307, "/v2/items/5", Method::Patch), (at.clone(), Method::Patch, true));
        assert_eq!(follows(308, "http://127.0.0.1:7000/v2/items/5", Method::Put), (at.clone(), Method::Put, true));
        assert_eq!(follows(303, "/v2/items/5", Method::Patch), (at.clone(), Method::Get, false));
        assert_eq!(follows(302, "/v2/items/5", Method::Post), (at.clone(), Method::Get, false));
        assert_eq!(follows(301, "/v2/items/5", Method::Post), (at.clone(), Method::Get, false));
        assert_eq!(follows(301, "/v2/items/5", Method::Patch), (at.clone(), Method::Patch, true));
        assert_eq!(follows(302, "6", Method::Delete).0, "http://127.0.0.1:7000/v1/items/6");
        assert!(is_redirect(307) && !is_redirect(304) && !is_redirect(300));
    }

    #[test]
    fn another_origin_is_refused_and_named_without_credentials() {
        for location in [
            "http://127.0.0.1:7001/v1/items/5",
            "https://127.0.0.1:7000/v1/items/5",
            "http://localhost:7000/v1/items/5",
            "//u:secret@evil.example/steal",
        ] {
            match step(307, location, &from(), Method::Patch, 0) {
                Step::Refuse(why) => {
                    assert!(why.contains("another origin") && why.contains("Location"), "{why}");
                    assert!(!why.contains("secret"), "{why}");
                }
                other => panic!("{location} followed: {other:?}"),
            }
        }
        let Step::Refuse(why) = step(307, "http://127.0.0.1:7001/x", &from(), Method::Post, 0) else { panic!() };
        assert!(why.contains("http://127.0.0.1:7001/x"), "{why}");
    }

    #[test]
    fn hops_are_limited() {
        assert!(matches!(step(307, "/a", &from(), Method::Get, MAX_HOPS - 1), Step::Follow { .. }));
        let Step::Refuse(why) = step(307, "/a", &from(), Method::Get, MAX_HOPS) else { panic!() };
        assert!(why.starts_with("more than 5 redirects"), "{why}");
    }
}
