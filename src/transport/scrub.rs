//! Keeping secrets out of what the remote says back: a remote that repeats a credential in
//! its error message (whole, without its scheme word, percent-encoded or JSON-escaped), or a
//! URL with credentials in an error text, must not get it into events, link status, pending
//! errors or the log.

use crate::logic::delivery::encode_component;
use crate::logic::link_spec::redact_url;

/// Shorter values are not masked: they would mask ordinary words.
const MIN_SECRET: usize = 6;
const MASK: &str = "***";

/// The texts to mask for a request's headers, longest first.
#[derive(Debug, Clone, Default)]
pub struct Secrets(Vec<String>);

impl Secrets {
    /// Every header value, and the credential after a scheme word (`Bearer x`, `Basic x`,
    /// `Token x`), each also percent-encoded and JSON-escaped.
    pub fn of(headers: &[(String, String)]) -> Self {
        let mut plain = Vec::new();
        for (_, value) in headers {
            plain.push(value.trim().to_string());
            if let Some((scheme, credential)) = value.trim().split_once(char::is_whitespace) {
                if !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    plain.push(credential.trim().to_string());
                }
            }
        }
        let mut all = Vec::new();
        for p in plain.into_iter().filter(|p| p.len() >= MIN_SECRET) {
            let json = serde_json::to_string(&p).unwrap_or_default();
            let json = json.trim_matches('"').to_string();
            all.push(json.replace('/', "\\/"));
            all.push(json);
            all.push(encode_component(&p));
            all.push(p.replace(' ', "+"));
            all.push(p);
        }
        all.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        all.dedup();
        Self(all)
    }

    /// `text` with every secret masked and URL credentials redacted.
    pub fn scrub(&self, text: &str) -> String {
        let mut text = redact_urls(text);
        for secret in &self.0 {
            if text.contains(secret.as_str()) {
                text = text.replace(secret.as_str(), MASK);
            }
        }
        text
    }
}

/// `text` with the `user:password@` part of every URL in it replaced by `***@`.
pub fn redact_urls(text: &str) -> String {
    if !text.contains("://") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        // The scheme: the letters right before "://".
        let start = rest[..at]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || "+-.".contains(c)))
            .map_or(0, |i| i + rest[i..].chars().next().map_or(1, char::len_utf8));
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        let end = tail[at - start + 3..]
            .find(|c: char| c.is_whitespace() || "\"'<>`".contains(c))
            .map_or(tail.len(), |i| i + at - start + 3);
        out.push_str(&redact_url(&tail[..end]));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn header_values_are_masked() {
        let s = Secrets::of(&headers(&[("X-Api-Key", "very-secret-123")]));
        assert_eq!(s.scrub("key very-secret-123 expired"), "key *** expired");
    }

    #[test]
    fn the_credential_without_its_scheme_word_is_masked() {
        for scheme in ["Bearer", "Basic", "Token"] {
            let s = Secrets::of(&headers(&[("Authorization", &format!("{scheme} SUPERSECRET-123456"))]));
            assert_eq!(s.scrub("token SUPERSECRET-123456 is revoked"), "token *** is revoked", "{scheme}");
            assert_eq!(s.scrub(&format!("got '{scheme} SUPERSECRET-123456'")), "got '***'");
        }
    }

    #[test]
    fn encoded_forms_are_masked() {
        let s = Secrets::of(&headers(&[("Authorization", "Bearer ab/cd+ef\"gh==")]));
        assert_eq!(s.scrub("seen ab%2Fcd%2Bef%22gh%3D%3D"), "seen ***");
        assert_eq!(s.scrub(r#"{"message": "bad token ab/cd+ef\"gh=="}"#), r#"{"message": "bad token ***"}"#);
        assert_eq!(s.scrub(r#"{"message": "bad token ab\/cd+ef\"gh=="}"#), r#"{"message": "bad token ***"}"#);
        assert_eq!(s.scrub("header was Bearer%20ab%2Fcd%2Bef%22gh%3D%3D"), "header was ***");
    }

    #[test]
    fn short_values_and_scheme_words_alone_are_left() {
        let s = Secrets::of(&headers(&[("Authorization", "Bearer abc"), ("X", "12345")]));
        assert_eq!(s.scrub("Bearer abc: 12345 and abc"), "***: 12345 and abc");
        assert_eq!(redact_urls("«http://u:p@h/»"), "«http://***@h/»");
    }

    #[test]
    fn url_credentials_are_redacted() {
        assert_eq!(
            redact_urls("error sending request for url (http://admin:pw@h:1/x): refused"),
            "error sending request for url (http://***@h:1/x): refused"
        );
        assert_eq!(redact_urls("see \"https://u@a/b\" and http://c/d"), "see \"https://***@a/b\" and http://c/d");
        assert_eq!(redact_urls("no urls here"), "no urls here");
        let s = Secrets::of(&[]);
        assert_eq!(s.scrub("go to http://u:p@h/"), "go to http://***@h/");
    }
}
