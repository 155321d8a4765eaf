//! Which addresses webhooks may reach: the guard against server-side request forgery.
//!
//! A tenant chooses its webhook URL, and the server POSTs to it from inside the operator's
//! network. Without a guard a tenant could make the server call loopback services, the cloud
//! metadata endpoint (`169.254.169.254`), private hosts or the server itself. So every
//! delivery checks the addresses it is about to connect to:
//!
//! - a URL naming an IP address is checked before the request (reqwest never asks the
//!   resolver about those);
//! - a URL naming a host is resolved by `GuardedResolver`, reqwest's resolver for webhooks,
//!   which drops every internal address and refuses the host when none is left. The
//!   connection is made to an address that was checked, so a name that resolves to a public
//!   address once and to `127.0.0.1` the next time (DNS rebinding) gains nothing;
//! - redirects are not followed (a 3xx is a refusal), and no proxy is used (a proxy would
//!   resolve the name itself).
//!
//! Internal means ([`internal_kind`]): unspecified, loopback, private (`10/8`, `172.16/12`,
//! `192.168/16`), shared (`100.64/10`), link-local (`169.254/16`, `fe80::/10`), unique local
//! (`fc00::/7`), multicast, broadcast, reserved, documentation and benchmarking ranges, the
//! same inside IPv4-mapped, IPv4-compatible, NAT64 and 6to4 IPv6 addresses, and any address of
//! this host's own interfaces.
//!
//! A tenant registering a URL gets a 400 at once for an IP address that is internal, for
//! `localhost` and for a scheme other than http(s) ([`check_url`]); other names can only be
//! judged when they are resolved, at delivery.
//!
//! The operator lets named targets through with `WEBHOOK_ALLOW_HOSTS`
//! ([`WebhookAllowList`]): host names (matched exactly, any address they resolve to is then
//! allowed), addresses and CIDR ranges.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use url::{Host, Url};
use whatsapp_core::{Error, Result};

/// The setting that lets internal targets through, named in every refusal.
pub const ALLOW_SETTING: &str = "WEBHOOK_ALLOW_HOSTS";

/// The targets the operator allows although they are internal: host names, addresses and
/// CIDR ranges. Empty (the default): no internal target is allowed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookAllowList {
    hosts: Vec<String>,
    nets: Vec<IpNet>,
}

impl WebhookAllowList {
    /// Parses a comma-separated list such as `127.0.0.0/8,localhost,[::1]`; blanks around
    /// entries and empty entries are ignored. An entry with a `/` must be a CIDR range, one
    /// that parses as an IP address (brackets allowed for IPv6) is that address, anything
    /// else must be a host name. The error says which entry is wrong.
    pub fn parse(list: &str) -> std::result::Result<Self, String> {
        let mut allow = WebhookAllowList::default();
        for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let bare = entry
                .strip_prefix('[')
                .and_then(|e| e.strip_suffix(']'))
                .unwrap_or(entry);
            if entry.contains('/') {
                let net: IpNet = bare.parse().map_err(|_| {
                    format!("`{entry}` is not a CIDR range like 127.0.0.0/8 or fd00::/8")
                })?;
                allow.nets.push(net.trunc());
            } else if let Ok(ip) = bare.parse::<IpAddr>() {
                allow.nets.push(IpNet::from(canonical(ip)));
            } else {
                let host = normalise_host(entry);
                let valid = !host.is_empty()
                    && host.len() <= 253
                    && host.split('.').all(|label| {
                        !label.is_empty()
                            && label.len() <= 63
                            && label
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    });
                if !valid {
                    return Err(format!(
                        "`{entry}` is neither a host name, an IP address nor a CIDR range"
                    ));
                }
                allow.hosts.push(host);
            }
        }
        Ok(allow)
    }

    /// Whether nothing is allowed beyond public addresses.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty() && self.nets.is_empty()
    }

    /// Whether `host` (a URL's host name) is listed by name.
    pub fn allows_host(&self, host: &str) -> bool {
        let host = normalise_host(host);
        self.hosts.contains(&host)
    }

    /// Whether `ip` lies in a listed address or range (an IPv4-mapped IPv6 address counts as
    /// its IPv4 address).
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }
}

impl fmt::Display for WebhookAllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entries: Vec<String> = self
            .hosts
            .iter()
            .cloned()
            .chain(self.nets.iter().map(IpNet::to_string))
            .collect();
        f.write_str(&entries.join(","))
    }
}

fn normalise_host(host: &str) -> String {
    host.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// An IPv4-mapped IPv6 address as its IPv4 address; anything else unchanged.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// Why `ip` is an internal target (`"loopback"`, `"private"`, …), or `None` for a public
/// address. Pure: the addresses of this host's own interfaces are checked separately, at
/// delivery time.
pub fn internal_kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => internal_v6(v6),
    }
}

fn internal_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match () {
        _ if ip.is_unspecified() || a == 0 => "unspecified (this network)",
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_private() => "private",
        _ if a == 100 && (64..128).contains(&b) => "shared (carrier-grade NAT)",
        _ if ip.is_link_local() => "link-local",
        _ if a == 192 && b == 0 && c == 0 => "IETF protocol assignment",
        _ if ip.is_documentation() => "documentation",
        _ if a == 198 && (b == 18 || b == 19) => "benchmarking",
        _ if ip.is_multicast() => "multicast",
        _ if ip.is_broadcast() => "broadcast",
        _ if a >= 240 => "reserved",
        _ => return None,
    })
}

fn internal_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = embedded_v4(ip) {
        return internal_v4(v4);
    }
    let s = ip.segments();
    Some(match () {
        _ if ip.is_unspecified() => "unspecified",
        _ if ip.is_loopback() => "loopback",
        _ if (s[0] & 0xfe00) == 0xfc00 => "unique local",
        _ if (s[0] & 0xffc0) == 0xfe80 => "link-local",
        _ if (s[0] & 0xffc0) == 0xfec0 => "site-local",
        _ if ip.is_multicast() => "multicast",
        _ if s[0] == 0x2001 && s[1] == 0x0db8 => "documentation",
        _ if s[0] == 0x0100 && s[1] == 0 && s[2] == 0 && s[3] == 0 => "discard-only",
        // ::/8 outside the forms above is reserved.
        _ if (s[0] & 0xff00) == 0 => "reserved",
        _ => return None,
    })
}

/// The IPv4 address carried by an IPv4-mapped (`::ffff:a.b.c.d`), IPv4-compatible
/// (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`) or 6to4 (`2002:aabb:ccdd::`) address.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = || Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6].iter().all(|&x| x == 0) && !(s[6] == 0 && s[7] <= 1) {
        return Some(low());
    }
    if s[0] == 0x0064 && s[1] == 0xff9b && s[2..6].iter().all(|&x| x == 0) {
        return Some(low());
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new(
            (s[1] >> 8) as u8,
            s[1] as u8,
            (s[2] >> 8) as u8,
            s[2] as u8,
        ));
    }
    None
}

/// Whether `ip` is an address of one of this host's interfaces: binding a socket to it
/// succeeds only then.
fn is_own_address(ip: IpAddr) -> bool {
    std::net::UdpSocket::bind(SocketAddr::new(ip, 0)).is_ok()
}

/// Why delivering to `ip` (reached through `host`) is refused, or `None` when it may go.
fn refusal(host: &str, ip: IpAddr, allow: &WebhookAllowList) -> Option<String> {
    if allow.allows_ip(ip) {
        return None;
    }
    let kind = internal_kind(ip).or_else(|| is_own_address(ip).then_some("this host's own"))?;
    let shown = match internal_v6_embedded(ip) {
        Some(v4) => format!("{ip} (IPv4 {v4})"),
        None => ip.to_string(),
    };
    let via = if host == ip.to_string() {
        String::new()
    } else {
        format!("{host} resolves to ")
    };
    Some(format!(
        "webhook target refused: {via}{shown} is an internal address ({kind}); \
         the operator can allow it with {ALLOW_SETTING}"
    ))
}

fn internal_v6_embedded(ip: IpAddr) -> Option<Ipv4Addr> {
    match ip {
        IpAddr::V6(v6) => embedded_v4(v6),
        IpAddr::V4(_) => None,
    }
}

/// Checks a webhook URL when a tenant registers it, without resolving it: the scheme must
/// be http or https, and a host that is an IP address, `localhost` or a name under
/// `.localhost` must not be internal unless `allow` lists it. A refusal is
/// [`Error::InvalidInput`] for `webhook url`, naming the problem. Other host names are
/// checked at each delivery, on the addresses they resolve to then.
pub fn check_url(url: &Url, allow: &WebhookAllowList) -> Result<()> {
    check_address(url, allow)?;
    if let Some(Host::Domain(name)) = url.host() {
        let name = normalise_host(name);
        if (name == "localhost" || name.ends_with(".localhost")) && !allow.allows_host(&name) {
            return Err(Error::invalid(
                FIELD,
                format!(
                    "webhook target refused: {name} is an internal name (loopback); \
                     the operator can allow it with {ALLOW_SETTING}"
                ),
            ));
        }
    }
    Ok(())
}

const FIELD: &str = "webhook url";

/// The delivery-time check of a URL: the scheme, and the host when it is an IP address
/// (reqwest does not ask the resolver about those). Host names are left to
/// [`GuardedResolver`].
pub(crate) fn check_address(url: &Url, allow: &WebhookAllowList) -> Result<()> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::invalid(
            FIELD,
            format!("must be an http or https URL, not {:?}", url.scheme()),
        ));
    }
    let refused = match url.host() {
        None => return Err(Error::invalid(FIELD, "must name a host")),
        Some(Host::Ipv4(v4)) => refusal(&v4.to_string(), IpAddr::V4(v4), allow),
        Some(Host::Ipv6(v6)) => refusal(&v6.to_string(), IpAddr::V6(v6), allow),
        Some(Host::Domain(_)) => None,
    };
    match refused {
        Some(why) => Err(Error::invalid(FIELD, why)),
        None => Ok(()),
    }
}

/// A delivery refused because its target is internal: returned by [`GuardedResolver`]
/// inside reqwest's error, and recognised by the sender to make the failure permanent.
#[derive(Debug, Clone)]
pub(crate) struct TargetRefused(pub(crate) String);

impl fmt::Display for TargetRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TargetRefused {}

impl TargetRefused {
    /// The refusal somewhere in `error`'s chain of sources, if there is one.
    pub(crate) fn find(error: &(dyn std::error::Error + 'static)) -> Option<TargetRefused> {
        let mut next = Some(error);
        while let Some(e) = next {
            if let Some(r) = e.downcast_ref::<TargetRefused>() {
                return Some(r.clone());
            }
            // `io::Error::source` skips the error it wraps: look inside it.
            if let Some(r) = e
                .downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<TargetRefused>())
            {
                return Some(r.clone());
            }
            next = e.source();
        }
        None
    }
}

/// reqwest's resolver for webhooks: resolves with the system resolver, then keeps only the
/// addresses that are public or allowed; a host left with none is refused
/// ([`TargetRefused`]). A host listed by name in the allow-list keeps all its addresses.
#[derive(Debug, Clone)]
pub(crate) struct GuardedResolver {
    allow: Arc<WebhookAllowList>,
}

impl GuardedResolver {
    pub(crate) fn new(allow: WebhookAllowList) -> Self {
        GuardedResolver {
            allow: Arc::new(allow),
        }
    }

    /// The addresses of `host` that may be connected to.
    pub(crate) async fn resolve_checked(
        &self,
        host: &str,
    ) -> std::result::Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
        let resolved: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
        if self.allow.allows_host(host) {
            return Ok(resolved);
        }
        let mut first_refusal = None;
        let kept: Vec<SocketAddr> = resolved
            .into_iter()
            .filter(|a| match refusal(host, a.ip(), &self.allow) {
                None => true,
                Some(why) => {
                    first_refusal.get_or_insert(why);
                    false
                }
            })
            .collect();
        match (kept.is_empty(), first_refusal) {
            (true, Some(why)) => Err(Box::new(TargetRefused(why))),
            _ => Ok(kept),
        }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let this = self.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = this.resolve_checked(&host).await?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn classifies_internal_addresses() {
        let internal = [
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("127.0.0.1", "loopback"),
            ("127.255.255.254", "loopback"),
            ("10.0.0.1", "private"),
            ("172.16.0.1", "private"),
            ("172.31.255.255", "private"),
            ("192.168.1.1", "private"),
            ("100.64.0.1", "shared"),
            ("100.100.100.200", "shared"),
            ("169.254.169.254", "link-local"),
            ("192.0.0.170", "IETF"),
            ("192.0.2.1", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("255.255.255.255", "broadcast"),
            ("240.0.0.1", "reserved"),
            ("::", "unspecified"),
            ("::1", "loopback"),
            ("fc00::1", "unique local"),
            ("fd12:3456::1", "unique local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("fec0::1", "site-local"),
            ("ff02::1", "multicast"),
            ("2001:db8::1", "documentation"),
            ("100::1", "discard-only"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::ffff:10.0.0.1", "private"),
            ("::ffff:0.0.0.0", "unspecified"),
            ("::127.0.0.1", "loopback"),
            ("64:ff9b::10.0.0.1", "private"),
            ("64:ff9b::7f00:1", "loopback"),
            ("2002:7f00:1::", "loopback"),
            ("2002:a9fe:a9fe::1", "link-local"),
        ];
        for (addr, want) in internal {
            let got = internal_kind(ip(addr));
            assert!(
                got.is_some_and(|k| k.contains(want)),
                "{addr}: {got:?}, want {want}"
            );
        }
        let public = [
            "1.1.1.1",
            "8.8.8.8",
            "93.184.215.14",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.0.1",
            "192.169.0.1",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ];
        for addr in public {
            assert_eq!(internal_kind(ip(addr)), None, "{addr}");
        }
    }

    #[test]
    fn allow_lists_parse_and_match() {
        let allow =
            WebhookAllowList::parse(" 127.0.0.0/8, localhost ,[::1],, hooks.internal. ,10.1.2.3")
                .unwrap();
        assert!(allow.allows_ip(ip("127.0.0.1")));
        assert!(allow.allows_ip(ip("127.9.9.9")));
        assert!(
            allow.allows_ip(ip("::ffff:127.0.0.1")),
            "mapped counts as IPv4"
        );
        assert!(allow.allows_ip(ip("::1")));
        assert!(allow.allows_ip(ip("10.1.2.3")));
        assert!(!allow.allows_ip(ip("10.1.2.4")));
        assert!(!allow.allows_ip(ip("169.254.169.254")));
        assert!(allow.allows_host("localhost"));
        assert!(allow.allows_host("LOCALHOST."));
        assert!(allow.allows_host("hooks.internal"));
        assert!(!allow.allows_host("sub.localhost"), "names match exactly");
        assert!(!allow.allows_host("127.0.0.1"));
        assert!(WebhookAllowList::parse("").unwrap().is_empty());
        assert!(WebhookAllowList::parse(" , ").unwrap().is_empty());
        // A host part in a range is truncated to the network.
        assert!(
            WebhookAllowList::parse("10.0.0.7/24")
                .unwrap()
                .allows_ip(ip("10.0.0.200"))
        );
        for bad in [
            "10.0.0.0/33",
            "300.0.0.0/8",
            "fd00::/129",
            "a b",
            "under/score",
            "-/8",
            "x..y",
        ] {
            let e = WebhookAllowList::parse(bad).unwrap_err();
            assert!(e.contains(bad), "{bad}: {e}");
        }
    }

    #[test]
    fn urls_are_checked_without_resolving() {
        let none = WebhookAllowList::default();
        let loopback = WebhookAllowList::parse("127.0.0.1,localhost").unwrap();
        let cases: [(&str, &WebhookAllowList, Option<&[&str]>); 16] = [
            ("https://hooks.example.com/in", &none, None),
            ("http://93.184.215.14:8080/in", &none, None),
            ("http://[2606:4700:4700::1111]/in", &none, None),
            (
                "http://127.0.0.1:4000/hook",
                &none,
                Some(&["127.0.0.1", "loopback"]),
            ),
            ("http://127.0.0.1:4000/hook", &loopback, None),
            (
                "http://localhost:4000/hook",
                &none,
                Some(&["localhost", "loopback"]),
            ),
            ("http://api.LOCALHOST/hook", &none, Some(&["api.localhost"])),
            ("http://localhost:4000/hook", &loopback, None),
            (
                "http://169.254.169.254/latest",
                &loopback,
                Some(&["169.254.169.254", "link-local"]),
            ),
            ("http://[::1]/", &none, Some(&["::1", "loopback"])),
            (
                "http://0.0.0.0:4000/",
                &none,
                Some(&["0.0.0.0", "unspecified"]),
            ),
            (
                "http://[::ffff:127.0.0.1]/",
                &none,
                Some(&["IPv4 127.0.0.1", "loopback"]),
            ),
            ("http://[::ffff:127.0.0.1]/", &loopback, None),
            ("http://0x7f.1/", &none, Some(&["127.0.0.1"])),
            (
                "ftp://hooks.example.com/",
                &loopback,
                Some(&["http or https"]),
            ),
            ("file:///etc/passwd", &loopback, Some(&["http or https"])),
        ];
        for (url, allow, want) in cases {
            let got = check_url(&Url::parse(url).unwrap(), allow);
            match (want, got) {
                (None, Ok(())) => {}
                (Some(want), Err(Error::InvalidInput { message, .. })) => {
                    for w in want {
                        assert!(message.contains(w), "{url}: {message}");
                    }
                    if !want[0].contains("http") {
                        assert!(message.contains(ALLOW_SETTING), "{url}: {message}");
                        assert!(message.contains("internal"), "{url}: {message}");
                    }
                }
                (want, got) => panic!("{url}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn deliveries_leave_host_names_to_the_resolver() {
        let none = WebhookAllowList::default();
        let url = |u: &str| Url::parse(u).unwrap();
        assert!(check_address(&url("http://localhost:4000/"), &none).is_ok());
        assert!(check_address(&url("http://127.0.0.1:4000/"), &none).is_err());
        assert!(check_address(&url("http://[::1]/"), &none).is_err());
        assert!(check_address(&url("ftp://example.com/"), &none).is_err());
    }

    #[tokio::test]
    async fn the_resolver_drops_internal_addresses() {
        let refused = GuardedResolver::new(WebhookAllowList::default())
            .resolve_checked("localhost")
            .await
            .unwrap_err();
        let refused = TargetRefused::find(refused.as_ref()).expect("a refusal");
        assert!(
            refused.0.contains("localhost resolves to") && refused.0.contains(ALLOW_SETTING),
            "{refused}"
        );
        // Allowed by address: only that address is kept (not `::1`).
        let by_ip = GuardedResolver::new(WebhookAllowList::parse("127.0.0.1").unwrap())
            .resolve_checked("localhost")
            .await
            .unwrap();
        assert!(!by_ip.is_empty());
        assert!(by_ip.iter().all(|a| a.ip() == ip("127.0.0.1")), "{by_ip:?}");
        // Allowed by name: whatever it resolves to.
        let by_name = GuardedResolver::new(WebhookAllowList::parse("localhost").unwrap())
            .resolve_checked("localhost")
            .await
            .unwrap();
        assert!(by_name.iter().all(|a| a.ip().is_loopback()) && !by_name.is_empty());
    }

    #[test]
    fn the_own_host_is_internal() {
        assert!(is_own_address(ip("127.0.0.1")));
        assert!(
            !is_own_address(ip("192.0.2.1")),
            "documentation range is nobody's"
        );
    }
}
