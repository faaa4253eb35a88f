//! A client for the JSON API: one request per connection, with an optional
//! bearer token and JSON body; answers parsed as JSON (`Null` when empty).

use std::net::SocketAddr;

use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::http::{Response, read_response};
use super::web::{WebClient, csrf_of, testid};

/// An answer: status, parsed body, and the raw response.
pub struct Answer {
    pub status: u16,
    pub json: Value,
    pub raw: Response,
}

/// Sends `method path` with `token` as bearer and `body` as JSON.
pub async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Answer {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        head.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    if !body.is_empty() {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    } else if method != "GET" {
        head.push_str("Content-Length: 0\r\n");
    }
    send_raw(addr, format!("{head}\r\n{body}").as_bytes()).await
}

/// Sends bytes as they are and parses the answer.
pub async fn send_raw(addr: SocketAddr, request: &[u8]) -> Answer {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let raw = read_response(&mut s).await.unwrap();
    let json = if raw.body.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&raw.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {} {}", raw.status, raw.body))
    };
    Answer {
        status: raw.status,
        json,
        raw,
    }
}

/// Creates an API token called `name` on the account page of a signed-in
/// client; returns the secret the page showed.
pub async fn create_token(c: &mut WebClient, name: &str) -> String {
    let page = c.get("/account").await;
    assert_eq!(page.status, 200);
    let r = c
        .post(
            "/account/tokens",
            &[("csrf", &csrf_of(&page.body)), ("name", name)],
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    testid(&r.body, "api-token")
}
