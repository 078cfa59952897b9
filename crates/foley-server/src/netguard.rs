//! Outbound HTTP under SSRF rules, shared by URL inputs and webhooks: http(s) only, every resolved address must
//! be public (loopback, private, link-local, CGNAT, multicast and unspecified ranges are refused unless the
//! config allows private targets), the connection is pinned to the checked addresses (no DNS rebinding),
//! redirects are followed by hand (at most 3, each re-checked), bodies are size-capped and time-limited.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::AsyncWriteExt;

const MAX_REDIRECTS: usize = 3;

/// Why an outbound request was refused or failed; `Display` is a sentence fragment for the user.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{0}")]
    Refused(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Failed(String),
}

fn v4_public(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || o[0] == 0
        || (o[0] == 100 && (o[1] & 0xc0) == 64)
        || (o[0] == 198 && (o[1] & 0xfe) == 18)
        || o[0] >= 240)
}

/// Whether `ip` is a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4_public(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return v4_public(v4);
            }
            let seg0 = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (seg0 & 0xfe00) == 0xfc00
                || (seg0 & 0xffc0) == 0xfe80
                || v6 == Ipv6Addr::LOCALHOST)
        }
    }
}

/// Parses and checks `url`, resolving its host; returns the URL and the addresses to connect to.
pub async fn check_url(url: &str, allow_private: bool) -> Result<(reqwest::Url, Vec<SocketAddr>), NetError> {
    let u = reqwest::Url::parse(url).map_err(|_| NetError::Refused(format!("{url:?} is not a valid URL")))?;
    if u.scheme() != "http" && u.scheme() != "https" {
        return Err(NetError::Refused(format!("URLs must use http or https, not {}", u.scheme())));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(NetError::Refused("URLs with credentials are not accepted".into()));
    }
    let host = u.host_str().ok_or_else(|| NetError::Refused("the URL has no host".into()))?;
    let port = u.port_or_known_default().unwrap_or(80);
    let host_trim = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = match host_trim.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::time::timeout(Duration::from_secs(10), tokio::net::lookup_host((host_trim, port)))
            .await
            .map_err(|_| NetError::Failed(format!("resolving {host} timed out")))?
            .map_err(|_| NetError::Failed(format!("the host {host} could not be resolved")))?
            .collect(),
    };
    if addrs.is_empty() {
        return Err(NetError::Failed(format!("the host {host} has no address")));
    }
    if !allow_private {
        if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
            return Err(NetError::Refused(format!(
                "the URL points at a loopback, private or link-local address ({}), which this server does not contact",
                bad.ip()
            )));
        }
    }
    Ok((u, addrs))
}

fn pinned_client(u: &reqwest::Url, addrs: &[SocketAddr], timeout: Duration) -> Result<reqwest::Client, NetError> {
    let mut b = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("foley/", env!("CARGO_PKG_VERSION")));
    if let Some(host) = u.host_str() {
        if host.parse::<IpAddr>().is_err() {
            b = b.resolve_to_addrs(host, addrs);
        }
    }
    b.build().map_err(|e| NetError::Failed(format!("HTTP client: {e}")))
}

/// GETs `url` into `dest` (at most `max_bytes`), following up to 3 checked redirects.
pub async fn fetch_to_file(
    url: &str,
    dest: &Path,
    max_bytes: u64,
    allow_private: bool,
    timeout: Duration,
) -> Result<u64, NetError> {
    let mut current = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let (u, addrs) = check_url(&current, allow_private).await?;
        let client = pinned_client(&u, &addrs, timeout)?;
        let resp = client.get(u.clone()).send().await.map_err(|e| NetError::Failed(describe(&e)))?;
        if resp.status().is_redirection() {
            let loc = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .and_then(|l| l.to_str().ok())
                .ok_or_else(|| NetError::Failed("a redirect had no Location".into()))?;
            current = u.join(loc).map_err(|_| NetError::Failed("a redirect Location is invalid".into()))?.to_string();
            continue;
        }
        if !resp.status().is_success() {
            return Err(NetError::Failed(format!("the server answered HTTP {}", resp.status().as_u16())));
        }
        if resp.content_length().is_some_and(|n| n > max_bytes) {
            return Err(too_large(max_bytes));
        }
        let mut file = tokio::fs::File::create(dest).await.map_err(|e| NetError::Failed(e.to_string()))?;
        let mut stream = resp.bytes_stream();
        let mut total = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| NetError::Failed(describe(&e)))?;
            total += chunk.len() as u64;
            if total > max_bytes {
                return Err(too_large(max_bytes));
            }
            file.write_all(&chunk).await.map_err(|e| NetError::Failed(e.to_string()))?;
        }
        file.flush().await.map_err(|e| NetError::Failed(e.to_string()))?;
        return Ok(total);
    }
    Err(NetError::Failed(format!("more than {MAX_REDIRECTS} redirects")))
}

fn too_large(max: u64) -> NetError {
    NetError::TooLarge(format!("the download is larger than the {:.1} MB limit", max as f64 / 1e6))
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "the request timed out".into()
    } else if e.is_connect() {
        "the connection failed".into()
    } else {
        format!("the request failed ({e})")
    }
}

/// POSTs a JSON body (no redirects followed); returns the HTTP status.
pub async fn post_json(
    url: &str,
    body: Vec<u8>,
    headers: &[(&str, String)],
    allow_private: bool,
    timeout: Duration,
) -> Result<u16, NetError> {
    let (u, addrs) = check_url(url, allow_private).await?;
    let client = pinned_client(&u, &addrs, timeout)?;
    let mut req = client.post(u).header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = req.send().await.map_err(|e| NetError::Failed(describe(&e)))?;
    Ok(resp.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_not_public() {
        for ip in ["127.0.0.1", "10.1.2.3", "192.168.0.1", "172.16.5.5", "169.254.169.254", "0.0.0.0", "100.64.0.1",
            "::1", "fe80::1", "fd00::1", "::ffff:127.0.0.1", "224.0.0.1", "255.255.255.255"] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[tokio::test]
    async fn urls_are_checked() {
        assert!(matches!(check_url("ftp://example.com/x", true).await, Err(NetError::Refused(_))));
        assert!(matches!(check_url("file:///etc/passwd", true).await, Err(NetError::Refused(_))));
        assert!(matches!(check_url("http://127.0.0.1:9/x", false).await, Err(NetError::Refused(_))));
        assert!(matches!(check_url("http://[::1]:9/x", false).await, Err(NetError::Refused(_))));
        assert!(matches!(check_url("http://localhost:9/x", false).await, Err(NetError::Refused(_))));
        assert!(check_url("http://127.0.0.1:9/x", true).await.is_ok());
        assert!(matches!(check_url("http://u:p@127.0.0.1/", true).await, Err(NetError::Refused(_))));
    }
}
