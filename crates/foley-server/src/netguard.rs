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

/// The rule of the config: every address when private targets are allowed, else public ones only.
fn policy(allow_private: bool) -> impl Fn(IpAddr) -> bool + Send + Sync {
    move |ip| allow_private || is_public(ip)
}

/// Parses and checks `url`, resolving its host; returns the URL and the addresses to connect to.
pub async fn check_url(url: &str, allow_private: bool) -> Result<(reqwest::Url, Vec<SocketAddr>), NetError> {
    check_url_with(url, &policy(allow_private)).await
}

/// [`check_url`] with the addresses that may be contacted given by `allowed`.
async fn check_url_with(
    url: &str,
    allowed: &(dyn Fn(IpAddr) -> bool + Send + Sync),
) -> Result<(reqwest::Url, Vec<SocketAddr>), NetError> {
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
    if let Some(bad) = addrs.iter().find(|a| !allowed(a.ip())) {
        return Err(NetError::Refused(format!(
            "the URL points at a loopback, private or link-local address ({}), which this server does not contact",
            bad.ip()
        )));
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
    fetch_to_file_with(url, dest, max_bytes, &policy(allow_private), timeout).await
}

/// [`fetch_to_file`] with the addresses that may be contacted (on every hop) given by `allowed`.
async fn fetch_to_file_with(
    url: &str,
    dest: &Path,
    max_bytes: u64,
    allowed: &(dyn Fn(IpAddr) -> bool + Send + Sync),
    timeout: Duration,
) -> Result<u64, NetError> {
    let mut current = url.to_string();
    for _ in 0..=MAX_REDIRECTS {
        let (u, addrs) = check_url_with(&current, allowed).await?;
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

    /// A loopback server answering every request with a redirect to `location`; counts the requests it got.
    async fn redirector(location: String) -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use tokio::io::AsyncReadExt;
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/clip.mp4", l.local_addr().unwrap());
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let h = hits.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = l.accept().await {
                h.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let answer = format!("HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                let _ = sock.write_all(answer.as_bytes()).await;
            }
        });
        (url, hits)
    }

    /// The SSRF rules hold on every hop: a public-looking first hop (here the loopback redirector, let through as if
    /// it were public) that redirects to a loopback, private or link-local address is refused at the redirect,
    /// before anything connects there, and nothing is written.
    #[tokio::test]
    async fn each_redirect_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("clip.mp4");
        // A second loopback server that must never be reached: the redirect target of the loopback case.
        let target = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
        let target_addr = target.local_addr().unwrap();
        let reached = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let r = reached.clone();
        tokio::spawn(async move {
            if target.accept().await.is_ok() {
                r.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        });
        // Loopback targets first: were the check missing, the test fails on them before anything leaves the host.
        for location in [
            format!("http://{target_addr}/clip.mp4"),
            "http://[::1]:9/clip.mp4".to_string(),
            "http://10.0.0.7/clip.mp4".to_string(),
            "http://169.254.169.254/latest/meta-data/clip.mp4".to_string(),
        ] {
            let (first, hits) = redirector(location.clone()).await;
            // Only the redirector's address (127.0.0.1) counts as public.
            let allowed = |ip: IpAddr| ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || is_public(ip);
            let got = fetch_to_file_with(&first, &dest, 1 << 20, &allowed, Duration::from_secs(10)).await;
            let expected_ip = reqwest::Url::parse(&location).unwrap().host_str().unwrap().trim_matches(['[', ']']).to_string();
            match got {
                Err(NetError::Refused(why)) => {
                    assert!(why.contains("loopback, private or link-local") && why.contains(&expected_ip), "{location}: {why}")
                }
                other => panic!("a redirect to {location} was not refused: {other:?}"),
            }
            assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1, "the first hop was fetched once");
            assert!(!dest.exists(), "nothing written for {location}");
        }
        // A redirect between allowed addresses is followed, and the rule still holds on the hop after it.
        let (inner, inner_hits) = redirector(format!("http://{target_addr}/x")).await;
        let (outer, outer_hits) = redirector(inner.clone()).await;
        let allowed = |ip: IpAddr| ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || is_public(ip);
        let got = fetch_to_file_with(&outer, &dest, 1 << 20, &allowed, Duration::from_secs(10)).await;
        assert!(matches!(&got, Err(NetError::Refused(why)) if why.contains("127.0.0.2")), "{got:?}");
        assert!(!reached.load(std::sync::atomic::Ordering::SeqCst), "the redirect target was contacted");
        let hits = (outer_hits.load(std::sync::atomic::Ordering::SeqCst), inner_hits.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(hits, (1, 1), "both allowed hops fetched once");
    }
}
