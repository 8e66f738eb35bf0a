//! The webhook listener's pure decisions: which address a database's worker listens on, what
//! a request asks for (routing), whether its caller may ask it (bearer token or HMAC-SHA256
//! signature, compared in constant time), what its body holds (records), and which key makes
//! a repeated delivery recognisable. No I/O: the listener (`crate::listen`) and its tests call
//! these with whatever arrives, so none of them may panic on any input.

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use subtle::ConstantTimeEq;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `POST /links/{link}/records`
    Records(String),
    /// `POST /links/{link}/nudge`
    Nudge(String),
    /// `GET /metrics`
    Metrics,
    /// `GET /health`
    Health,
}

/// Why a request has no route: 404 or 405.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoute {
    NotFound,
    MethodNotAllowed(&'static str),
}

/// Link names in URLs: percent-decoded, 1 to 63 bytes (PostgreSQL's identifier length), no
/// control characters.
const MAX_LINK_NAME: usize = 63;

/// Routes a request by method and path (the query, if any, is ignored).
pub fn route(method: &str, target: &str) -> Result<Route, NoRoute> {
    let path = target.split(['?', '#']).next().unwrap_or("");
    let parts: Vec<&str> = path.split('/').collect();
    let (want, found) = match parts.as_slice() {
        ["", "metrics"] => ("GET", Route::Metrics),
        ["", "health"] => ("GET", Route::Health),
        ["", "links", link, action] => {
            let name = decode_name(link).ok_or(NoRoute::NotFound)?;
            match *action {
                "records" => ("POST", Route::Records(name)),
                "nudge" => ("POST", Route::Nudge(name)),
                _ => return Err(NoRoute::NotFound),
            }
        }
        _ => return Err(NoRoute::NotFound),
    };
    let allowed = method == want || (want == "GET" && method == "HEAD");
    if allowed {
        Ok(found)
    } else {
        Err(NoRoute::MethodNotAllowed(want))
    }
}

fn decode_name(segment: &str) -> Option<String> {
    let name = percent_encoding::percent_decode_str(segment).decode_utf8().ok()?.into_owned();
    let ok = !name.is_empty() && name.len() <= MAX_LINK_NAME && !name.chars().any(char::is_control);
    ok.then_some(name)
}

/// The address the worker of the `index`-th database (0-based) of `syncbridge.database`
/// listens on: `host:port` of `syncbridge.listen`, the port raised by `index`.
pub fn listen_addr(setting: &str, index: usize) -> Result<SocketAddr, String> {
    let base: SocketAddr = setting
        .trim()
        .parse()
        .map_err(|_| format!("syncbridge.listen = '{setting}' is not an address such as '127.0.0.1:8787'"))?;
    let port = u32::from(base.port()) + index as u32;
    if base.port() == 0 || port > u32::from(u16::MAX) {
        return Err(format!("syncbridge.listen = '{setting}': no port for database number {}", index + 1));
    }
    Ok(SocketAddr::new(base.ip(), port as u16))
}

/// How a link's webhooks prove they come from its remote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth<'a> {
    /// `Authorization: Bearer <secret>`.
    Bearer { secret: &'a str },
    /// HMAC-SHA256 with the secret of the raw body (or of `{timestamp}.{body}` with a
    /// timestamp header), in hex, in `header`, after `prefix` (such as `sha256=`).
    Hmac { secret: &'a str, header: &'a str, prefix: &'a str, timestamp: Option<Stamp<'a>> },
}

/// A signed timestamp header and how far (seconds) it may be from now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp<'a> {
    pub header: &'a str,
    pub tolerance: i64,
}

/// Header lookup by name, whatever its case.
pub fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Whether the request carries the link's proof. `now`: Unix seconds. Every failure looks the
/// same to the caller; the reason is for tests and debug lines only.
pub fn check(auth: &Auth<'_>, headers: &[(String, String)], body: &[u8], now: i64) -> Result<(), &'static str> {
    match auth {
        Auth::Bearer { secret } => {
            let given = header(headers, "authorization").ok_or("no Authorization header")?;
            let token = strip_prefix_ci(given.trim(), "bearer ").ok_or("not a bearer token")?.trim();
            // Digests first: the comparison then takes the same time whatever the lengths.
            let ok: bool = Sha256::digest(token.as_bytes()).ct_eq(&Sha256::digest(secret.as_bytes())).into();
            ok.then_some(()).ok_or("wrong token")
        }
        Auth::Hmac { secret, header: name, prefix, timestamp } => {
            let given = header(headers, name).ok_or("no signature header")?.trim();
            let hex = strip_prefix_ci(given, prefix).ok_or("signature without its prefix")?;
            let signature = decode_hex(hex).ok_or("signature is not hex")?;
            let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).map_err(|_| "bad key")?;
            if let Some(stamp) = timestamp {
                let at = header(headers, stamp.header).ok_or("no timestamp header")?.trim();
                let secs: i64 = at.parse().map_err(|_| "timestamp is not Unix seconds")?;
                if now.abs_diff(secs) > stamp.tolerance.max(0) as u64 {
                    return Err("timestamp outside the replay window");
                }
                mac.update(at.as_bytes());
                mac.update(b".");
            }
            mac.update(body);
            mac.verify_slice(&signature).map_err(|_| "wrong signature")
        }
    }
}

/// The hex HMAC-SHA256 signature of `body` (with `timestamp`, as `check` verifies it).
pub fn sign(secret: &str, timestamp: Option<&str>, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    if let Some(at) = timestamp {
        mac.update(at.as_bytes());
        mac.update(b".");
    }
    mac.update(body);
    to_hex(&mac.finalize().into_bytes())
}

fn strip_prefix_ci<'s>(s: &'s str, prefix: &str) -> Option<&'s str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix).then(|| &s[prefix.len()..])
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Why a body holds no records to apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadBody {
    /// 400: not JSON, or not records.
    Malformed(String),
    /// 413: more records than allowed.
    TooMany(usize),
}

/// The records of a push: a JSON array of objects, the link's `list_pointer` envelope around
/// one, or one object (a record alone).
pub fn records(body: &[u8], list_pointer: &str, max: usize) -> Result<Vec<Value>, BadBody> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| BadBody::Malformed(format!("the body is not JSON: {e}")))?;
    let list = match value {
        Value::Array(items) => items,
        Value::Object(_) if !list_pointer.is_empty() => match value.pointer(list_pointer) {
            Some(Value::Array(items)) => items.clone(),
            _ => vec![value],
        },
        Value::Object(_) => vec![value],
        _ => return Err(BadBody::Malformed("the body must be a JSON array of records, or one record".into())),
    };
    if list.len() > max {
        return Err(BadBody::TooMany(list.len()));
    }
    if let Some(at) = list.iter().position(|r| !r.is_object()) {
        return Err(BadBody::Malformed(format!("record {} is not a JSON object", at + 1)));
    }
    Ok(list)
}

/// Headers that name a delivery, in the order they are looked for.
pub const DELIVERY_HEADERS: &[&str] = &["x-delivery-id", "idempotency-key", "x-webhook-id"];

/// The key that recognises a repeated delivery: the delivery id the remote sent (`id:`), or
/// the SHA-256 of the body (`sha256:`). The flag says which.
pub fn delivery_key(headers: &[(String, String)], body: &[u8]) -> (String, bool) {
    for name in DELIVERY_HEADERS {
        if let Some(id) = header(headers, name).map(str::trim).filter(|v| !v.is_empty()) {
            let id: String = id.chars().take(200).collect();
            return (format!("id:{id}"), true);
        }
    }
    (format!("sha256:{}", to_hex(&Sha256::digest(body))), false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn routes() {
        assert_eq!(route("POST", "/links/shop/records"), Ok(Route::Records("shop".into())));
        assert_eq!(route("POST", "/links/my%20shop/nudge?x=1"), Ok(Route::Nudge("my shop".into())));
        assert_eq!(route("GET", "/metrics"), Ok(Route::Metrics));
        assert_eq!(route("HEAD", "/health"), Ok(Route::Health));
        assert_eq!(route("GET", "/links/shop/records"), Err(NoRoute::MethodNotAllowed("POST")));
        assert_eq!(route("POST", "/metrics"), Err(NoRoute::MethodNotAllowed("GET")));
        for bad in ["/", "", "/links", "/links//records", "/links/a/b/records", "/links/a/other", "/links/%ff/nudge"] {
            assert_eq!(route("POST", bad), Err(NoRoute::NotFound), "{bad}");
        }
        let long = format!("/links/{}/nudge", "a".repeat(64));
        assert_eq!(route("POST", &long), Err(NoRoute::NotFound));
    }

    #[test]
    fn ports_follow_the_database_order() {
        assert_eq!(listen_addr("127.0.0.1:8787", 0).unwrap().to_string(), "127.0.0.1:8787");
        assert_eq!(listen_addr(" 127.0.0.1:8787 ", 2).unwrap().to_string(), "127.0.0.1:8789");
        assert_eq!(listen_addr("[::1]:9000", 1).unwrap().to_string(), "[::1]:9001");
        assert!(listen_addr("localhost:8787", 0).is_err());
        assert!(listen_addr("127.0.0.1:65535", 1).is_err());
        assert!(listen_addr("127.0.0.1:0", 0).is_err());
    }

    #[test]
    fn bearer_tokens() {
        let auth = Auth::Bearer { secret: "s3cret" };
        assert_eq!(check(&auth, &h(&[("Authorization", "Bearer s3cret")]), b"", 0), Ok(()));
        assert_eq!(check(&auth, &h(&[("authorization", "bearer s3cret ")]), b"", 0), Ok(()));
        assert!(check(&auth, &h(&[("Authorization", "Bearer s3cre")]), b"", 0).is_err());
        assert!(check(&auth, &h(&[("Authorization", "s3cret")]), b"", 0).is_err());
        assert!(check(&auth, &h(&[]), b"", 0).is_err());
    }

    #[test]
    fn hmac_signatures() {
        let body = br#"[{"id":1}]"#;
        let sig = format!("sha256={}", sign("k", None, body));
        let auth = Auth::Hmac { secret: "k", header: "X-Signature", prefix: "sha256=", timestamp: None };
        assert_eq!(check(&auth, &h(&[("x-signature", &sig)]), body, 0), Ok(()));
        assert_eq!(
            check(&auth, &h(&[("x-signature", &sig.to_uppercase().replace("SHA256=", "sha256="))]), body, 0),
            Ok(())
        );
        assert_eq!(check(&auth, &h(&[("x-signature", &sig)]), br#"[{"id":2}]"#, 0), Err("wrong signature"));
        assert!(check(&auth, &h(&[("x-signature", &sign("k", None, body))]), body, 0).is_err());
        let stamp = Stamp { header: "X-Timestamp", tolerance: 300 };
        let auth = Auth::Hmac { secret: "k", header: "X-Signature", prefix: "", timestamp: Some(stamp) };
        let sig = sign("k", Some("1000"), body);
        assert_eq!(check(&auth, &h(&[("x-signature", &sig), ("x-timestamp", "1000")]), body, 1200), Ok(()));
        assert!(check(&auth, &h(&[("x-signature", &sig), ("x-timestamp", "1000")]), body, 1400).is_err());
        assert!(check(&auth, &h(&[("x-signature", &sig), ("x-timestamp", "1001")]), body, 1000).is_err());
        assert!(check(&auth, &h(&[("x-signature", &sig)]), body, 1000).is_err());
    }

    #[test]
    fn bodies() {
        assert_eq!(records(br#"[{"id":1},{"id":2}]"#, "", 10).unwrap().len(), 2);
        assert_eq!(records(br#"{"data":[{"id":1}]}"#, "/data", 10).unwrap().len(), 1);
        assert_eq!(records(br#"{"id":1}"#, "/data", 10).unwrap()[0]["id"], 1);
        assert_eq!(records(br#"{"id":1}"#, "", 10).unwrap().len(), 1);
        assert!(matches!(records(b"[1]", "", 10), Err(BadBody::Malformed(_))));
        assert!(matches!(records(b"nope", "", 10), Err(BadBody::Malformed(_))));
        assert!(matches!(records(b"3", "", 10), Err(BadBody::Malformed(_))));
        assert_eq!(records(br#"[{},{},{}]"#, "", 2), Err(BadBody::TooMany(3)));
    }

    #[test]
    fn delivery_keys() {
        let (k, by_id) = delivery_key(&h(&[("X-Delivery-Id", "abc")]), b"x");
        assert_eq!((k.as_str(), by_id), ("id:abc", true));
        assert_eq!(delivery_key(&h(&[("Idempotency-Key", "k1")]), b"x").0, "id:k1");
        let (a, by_id) = delivery_key(&[], b"x");
        assert!(!by_id && a.starts_with("sha256:"));
        assert_ne!(a, delivery_key(&[], b"y").0);
        assert_eq!(a, delivery_key(&h(&[("X-Delivery-Id", "  ")]), b"x").0);
    }

    /// A small seeded generator (xorshift): the same inputs every run, many shapes.
    struct Gen(u64);
    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
            from[(self.next() % from.len() as u64) as usize]
        }
        fn bytes(&mut self, max: usize) -> Vec<u8> {
            let n = (self.next() % (max as u64 + 1)) as usize;
            (0..n).map(|_| self.next() as u8).collect()
        }
        /// Text from pieces that mean something here, and random bytes between them.
        fn text(&mut self) -> String {
            const PIECES: &[&str] = &[
                "/", "links", "records", "nudge", "metrics", "health", "%", "%2f", "%ff", "%00", "?", "#", "sha256=",
                "Bearer ", "bearer", " ", "[", "]", "{", "}", "\"id\"", ":", ",", "1", "-", "é", "\u{0}", "\n", "ab",
            ];
            let n = self.next() % 12;
            let mut s = String::new();
            for _ in 0..n {
                if self.next().is_multiple_of(4) {
                    s.push_str(&String::from_utf8_lossy(&self.bytes(4)));
                } else {
                    s.push_str(self.pick(PIECES));
                }
            }
            s
        }
    }

    /// No input makes routing, authentication, body reading or keying panic, and what they
    /// accept is what they should: a routed link name is never empty and never too long; a
    /// request passes authentication only with the right proof.
    #[test]
    fn no_input_panics() {
        let mut g = Gen(0x5eed_cafe_f00d_1234);
        for _ in 0..20_000 {
            let method = g.pick(&["GET", "POST", "HEAD", "PUT", "", "post", "DELETE"]);
            let target = g.text();
            if let Ok(Route::Records(name) | Route::Nudge(name)) = route(method, &target) {
                assert!(!name.is_empty() && name.len() <= MAX_LINK_NAME, "{target:?}");
            }
            let headers = vec![
                (g.text(), g.text()),
                ("authorization".to_string(), g.text()),
                ("x-signature".to_string(), g.text()),
                ("x-timestamp".to_string(), g.text()),
            ];
            let body = if g.next().is_multiple_of(2) { g.bytes(64) } else { g.text().into_bytes() };
            assert!(check(&Auth::Bearer { secret: "right" }, &headers, &body, 0).is_err());
            let stamp = Some(Stamp { header: "x-timestamp", tolerance: 300 });
            let prefix = g.pick(&["", "sha256=", "é"]);
            let hmac = Auth::Hmac { secret: "right", header: "x-signature", prefix, timestamp: stamp };
            assert!(check(&hmac, &headers, &body, g.next() as i64).is_err());
            let _ = records(&body, g.pick(&["", "/data", "/", "/0", "~"]), (g.next() % 5) as usize);
            let _ = delivery_key(&headers, &body);
            let _ = listen_addr(&g.text(), (g.next() % 70_000) as usize);
        }
    }
}
