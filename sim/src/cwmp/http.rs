//! A minimal HTTP/1.1 client for CPE sessions: keep-alive POSTs with Content-Length bodies,
//! one cookie, bounded response heads and bodies. The simulator talks to uspwatch's own ACS,
//! so chunked encoding and redirects are not needed.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const MAX_HEAD_LINES: usize = 64;
const MAX_BODY: usize = 1 << 20;

/// One HTTP response.
#[derive(Debug)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) set_cookie: Option<String>,
    pub(crate) body: Vec<u8>,
}

/// A connection to the ACS, reopened when the server closes it.
pub(crate) struct Client {
    addr: SocketAddr,
    host: String,
    path: String,
    conn: Option<BufReader<TcpStream>>,
}

impl Client {
    /// For `http://host:port/path` (host an IP address).
    pub(crate) fn new(url: &str) -> Result<Client, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or("the ACS URL must be http://")?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let addr: SocketAddr = authority
            .parse()
            .map_err(|_| format!("the ACS URL needs an ip:port, got {authority:?}"))?;
        Ok(Client {
            addr,
            host: authority.to_string(),
            path: path.to_string(),
            conn: None,
        })
    }

    /// Forgets the connection (a CPE opens a new one per session).
    pub(crate) fn close(&mut self) {
        self.conn = None;
    }

    pub(crate) async fn post(
        &mut self,
        body: &str,
        cookie: Option<&str>,
        authorization: Option<&str>,
    ) -> std::io::Result<Response> {
        if self.conn.is_none() {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.conn = Some(BufReader::new(s));
        }
        let mut req = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nSOAPAction: \r\n",
            self.path,
            self.host,
            body.len()
        );
        if !body.is_empty() {
            req.push_str("Content-Type: text/xml; charset=\"utf-8\"\r\n");
        }
        if let Some(c) = cookie {
            req.push_str(&format!("Cookie: {c}\r\n"));
        }
        if let Some(a) = authorization {
            req.push_str(&format!("Authorization: {a}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(body);
        let result = self.exchange(req.as_bytes()).await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    async fn exchange(&mut self, req: &[u8]) -> std::io::Result<Response> {
        let bad = |m: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, m.to_string());
        let conn = self.conn.as_mut().ok_or_else(|| bad("not connected"))?;
        conn.get_mut().write_all(req).await?;
        let mut line = String::new();
        conn.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| bad("not an HTTP response"))?;
        let (mut length, mut set_cookie, mut close) = (0usize, None, false);
        for _ in 0..MAX_HEAD_LINES {
            line.clear();
            conn.read_line(&mut line).await?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let Some((k, v)) = l.split_once(':') else {
                continue;
            };
            let v = v.trim();
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.parse().map_err(|_| bad("bad Content-Length"))?,
                "set-cookie" => set_cookie = v.split(';').next().map(str::to_string),
                "connection" => close = v.eq_ignore_ascii_case("close"),
                _ => {}
            }
        }
        if length > MAX_BODY {
            return Err(bad("response body too large"));
        }
        let mut body = vec![0; length];
        conn.read_exact(&mut body).await?;
        if close {
            self.conn = None;
        }
        Ok(Response {
            status,
            set_cookie,
            body,
        })
    }
}
