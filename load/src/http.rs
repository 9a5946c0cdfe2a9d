//! The HTTP/1.1 client: one keep-alive connection per virtual client, opened
//! lazily and reopened after any transport error.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpSocket, TcpStream};

/// Where requests go: a loopback address only.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) addr: SocketAddr,
    pub(crate) host: HeaderValue,
    pub(crate) display: String,
}

impl Target {
    /// Parses `127.0.0.1:PORT`, `localhost:PORT` or either with `http://`;
    /// anything that is not loopback is refused.
    pub(crate) fn parse(s: &str) -> Result<Self, String> {
        let rest = s.strip_prefix("http://").unwrap_or(s);
        if rest.starts_with("https://") {
            return Err("--target: https is not supported (loopback http only)".to_owned());
        }
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (
                h,
                p.parse::<u16>()
                    .map_err(|_| format!("--target: bad port in `{s}`"))?,
            ),
            None => (rest, 80),
        };
        let ip = match host {
            "127.0.0.1" | "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            _ => {
                return Err(format!(
                    "--target must be 127.0.0.1 or localhost (got `{host}`); load runs stay on this machine"
                ));
            }
        };
        let authority = format!("{host}:{port}");
        Ok(Self {
            addr: SocketAddr::new(ip, port),
            host: HeaderValue::from_str(&authority)
                .map_err(|_| format!("--target: bad host `{authority}`"))?,
            display: format!("http://{authority}"),
        })
    }
}

/// A response: status and the whole body.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
    /// The Retry-After header in whole seconds, when there is one.
    pub(crate) retry_after: Option<u64>,
}

/// A transport failure, by kind (used as the outcome label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum TransportError {
    Connect,
    Timeout,
    Closed,
    Io,
}

impl TransportError {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Timeout => "timeout",
            Self::Closed => "closed",
            Self::Io => "io",
        }
    }
}

fn classify(e: &hyper::Error) -> TransportError {
    if e.is_closed() || e.is_canceled() || e.is_incomplete_message() {
        TransportError::Closed
    } else {
        TransportError::Io
    }
}

/// One virtual client's connection.
#[derive(Debug)]
pub(crate) struct Client {
    target: Target,
    timeout: Duration,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// The loopback address connections come from (the kernel's choice
    /// when `None`), so one process can stand for many clients.
    local: Option<IpAddr>,
    pub(crate) connects: u64,
}

impl Client {
    pub(crate) fn new(target: Target, timeout: Duration) -> Self {
        Self {
            target,
            timeout,
            sender: None,
            local: None,
            connects: 0,
        }
    }

    /// A client whose connections come from `local` (any 127.0.0.0/8
    /// address is this machine's).
    pub(crate) fn from_address(target: Target, timeout: Duration, local: Ipv4Addr) -> Self {
        Self {
            local: Some(IpAddr::V4(local)),
            ..Self::new(target, timeout)
        }
    }

    async fn open(&self) -> std::io::Result<TcpStream> {
        match self.local {
            None => TcpStream::connect(self.target.addr).await,
            Some(local) => {
                let socket = TcpSocket::new_v4()?;
                socket.bind(SocketAddr::new(local, 0))?;
                socket.connect(self.target.addr).await
            }
        }
    }

    async fn connect(&mut self) -> Result<(), TransportError> {
        let stream = self.open().await.map_err(|_| TransportError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|_| TransportError::Connect)?;
        tokio::spawn(async move {
            let _ = conn.await;
        });
        self.sender = Some(sender);
        self.connects += 1;
        Ok(())
    }

    /// Opens the connection now (within the timeout) so the first measured
    /// request does not pay for it.
    pub(crate) async fn warm_up_connection(&mut self) -> Result<(), TransportError> {
        if self.sender.is_some() {
            return Ok(());
        }
        tokio::time::timeout(self.timeout, self.connect())
            .await
            .map_err(|_| TransportError::Timeout)?
    }

    /// A request with the target's Host header and, when given, a JSON body
    /// and a bearer token.
    pub(crate) fn request(
        &self,
        method: Method,
        path: &str,
        auth: Option<&HeaderValue>,
        body: Option<Bytes>,
    ) -> Request<Full<Bytes>> {
        let mut b = Request::builder()
            .method(method)
            .uri(path)
            .header(HOST, self.target.host.clone());
        if let Some(a) = auth {
            b = b.header(AUTHORIZATION, a.clone());
        }
        let body = match body {
            Some(bytes) => {
                b = b.header(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                bytes
            }
            None => Bytes::new(),
        };
        b.body(Full::new(body)).expect("a request from valid parts")
    }

    /// Sends one request (connecting first when needed) and reads the whole
    /// reply, all within the timeout. Any failure drops the connection.
    pub(crate) async fn send(
        &mut self,
        req: Request<Full<Bytes>>,
    ) -> Result<Reply, TransportError> {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.send_inner(req)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                self.sender = None;
                Err(TransportError::Timeout)
            }
        }
    }

    async fn send_inner(&mut self, req: Request<Full<Bytes>>) -> Result<Reply, TransportError> {
        if self.sender.as_ref().is_none_or(SendRequest::is_closed) {
            self.sender = None;
            self.connect().await?;
        }
        let sender = self.sender.as_mut().ok_or(TransportError::Connect)?;
        sender.ready().await.map_err(|e| classify(&e))?;
        let res = sender.send_request(req).await.map_err(|e| classify(&e))?;
        let (parts, body) = res.into_parts();
        let body = body.collect().await.map_err(|e| classify(&e))?.to_bytes();
        let retry_after = parts
            .headers
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        Ok(Reply {
            status: parts.status,
            body,
            retry_after,
        })
    }
}

/// A bearer Authorization value.
pub(crate) fn bearer(token: &str) -> Result<HeaderValue, String> {
    HeaderValue::from_str(&format!("Bearer {token}"))
        .map_err(|_| "token is not a valid header".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets_are_accepted() {
        assert_eq!(
            Target::parse("127.0.0.1:5050").unwrap().addr,
            "127.0.0.1:5050".parse().unwrap()
        );
        assert_eq!(
            Target::parse("http://localhost:81/").unwrap().addr.port(),
            81
        );
        assert!(Target::parse("10.0.0.1:5050").is_err());
        assert!(Target::parse("example.com:80").is_err());
        assert!(Target::parse("0.0.0.0:80").is_err());
        assert!(Target::parse("https://127.0.0.1:443").is_err());
    }
}
