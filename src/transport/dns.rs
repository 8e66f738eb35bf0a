//! Name resolution that keeps to `syncbridge.allowed_hosts`: when the list has address
//! entries, only resolved addresses inside them are connected to, so a name that later
//! resolves elsewhere (DNS rebinding, a changed record) is refused instead of reached.

use crate::logic::reach::{AllowList, NotAllowed};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::SocketAddr;
use std::sync::Arc;

pub struct Filtered(pub Arc<AllowList>);

impl Resolve for Filtered {
    fn resolve(&self, name: Name) -> Resolving {
        let list = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            // The port is the URL's; the connector sets it on each address.
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept = list.filter(&host, found.iter().map(SocketAddr::ip).collect())?;
            let addrs: Addrs = Box::new(kept.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// The refusal of the resolver, if it is what `e` comes from.
pub fn refusal(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(refused) = err.downcast_ref::<NotAllowed>() {
            return Some(refused.0.clone());
        }
        // An io::Error's source() skips the error it wraps.
        cur = match err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()) {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => err.source(),
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Outer(Box<dyn std::error::Error + Send + Sync>);

    impl std::fmt::Display for Outer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("client error (Connect)")
        }
    }

    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&*self.0)
        }
    }

    #[test]
    fn a_refusal_is_found_below_the_wrappers() {
        let refused = NotAllowed("\"h\" resolves to 10.0.0.1, which syncbridge.allowed_hosts does not allow".into());
        let wrapped = Outer(Box::new(std::io::Error::other(Outer(Box::new(refused.clone())))));
        assert_eq!(refusal(&wrapped), Some(refused.0));
        let other = Outer(Box::new(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused")));
        assert_eq!(refusal(&other), None);
    }

    #[test]
    fn resolved_addresses_outside_the_ranges_are_refused() {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(resolving());
    }

    async fn resolving() {
        let only_ten = Filtered(Arc::new(AllowList::parse("10.0.0.0/8").unwrap()));
        let err = only_ten.resolve("localhost".parse().unwrap()).await.err().expect("refused");
        assert!(refusal(&*err).is_some_and(|m| m.contains("localhost")), "{err}");
        let loopback = Filtered(Arc::new(AllowList::parse("127.0.0.0/8, ::1").unwrap()));
        let addrs: Vec<SocketAddr> = loopback.resolve("localhost".parse().unwrap()).await.unwrap().collect();
        assert!(!addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
