//! A cookie-keeping client for the web pages: GET and form POSTs over the
//! plain HTTP client, redirects not followed (tests check them).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::http::{Response, read_response};

pub struct WebClient {
    pub addr: SocketAddr,
    pub cookies: BTreeMap<String, String>,
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl WebClient {
    pub fn new(addr: SocketAddr) -> Self {
        Self {
            addr,
            cookies: BTreeMap::new(),
        }
    }

    async fn send(&mut self, head: String, body: &[u8]) -> Response {
        let mut s = TcpStream::connect(self.addr).await.unwrap();
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let mut request = head;
        if !cookie.is_empty() {
            request.push_str(&format!("Cookie: {cookie}\r\n"));
        }
        request.push_str("Connection: close\r\n\r\n");
        s.write_all(request.as_bytes()).await.unwrap();
        s.write_all(body).await.unwrap();
        let response = read_response(&mut s).await.unwrap();
        for (k, v) in &response.headers {
            if k == "set-cookie" {
                let pair = v.split(';').next().unwrap_or_default();
                if let Some((name, value)) = pair.split_once('=') {
                    if value.is_empty() || v.contains("Max-Age=0") {
                        self.cookies.remove(name);
                    } else {
                        self.cookies.insert(name.to_string(), value.to_string());
                    }
                }
            }
        }
        response
    }

    pub async fn get(&mut self, path: &str) -> Response {
        let head = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        self.send(head, b"").await
    }

    /// POSTs a form; `extra_headers` like `Origin: …` go into the head.
    pub async fn post_with(
        &mut self,
        path: &str,
        fields: &[(&str, &str)],
        extra_headers: &str,
    ) -> Response {
        let body = fields
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect::<Vec<_>>()
            .join("&");
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n{extra_headers}",
            self.addr,
            body.len()
        );
        self.send(head, body.as_bytes()).await
    }

    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Response {
        self.post_with(path, fields, "").await
    }
}

/// A password every test account may use.
pub const PASSWORD: &str = "vq7-Lmz2-pk9w";

/// Signs up `email` (with [`PASSWORD`]) from a fresh client on the broker's
/// web address `addr`; returns it signed in.
pub async fn sign_up(addr: SocketAddr, email: &str) -> WebClient {
    let mut c = WebClient::new(addr);
    let form = c.get("/signup").await;
    assert_eq!(form.status, 200);
    let csrf = csrf_of(&form.body);
    let r = c
        .post(
            "/signup",
            &[
                ("csrf", &csrf),
                ("email", email),
                ("password", PASSWORD),
                ("password_again", PASSWORD),
            ],
        )
        .await;
    assert_eq!(r.status, 303, "{}", r.body);
    assert!(c.cookies.contains_key("rpb_session"));
    c
}

/// The value of the hidden `csrf` field in a page.
pub fn csrf_of(page: &str) -> String {
    let marker = "name=\"csrf\" value=\"";
    let start = page.find(marker).expect("a csrf field") + marker.len();
    let end = page[start..].find('"').unwrap() + start;
    page[start..end].to_string()
}

/// The value of header `name` (lowercase).
pub fn header<'a>(r: &'a Response, name: &str) -> Option<&'a str> {
    r.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Creates administrator `email` (with [`PASSWORD`]) with `rpibroker admin
/// create`, and returns a client signed in as them.
pub async fn sign_in_admin(broker: &super::TestBroker, email: &str) -> WebClient {
    use std::io::Write;
    let mut child = broker
        .command()
        .args(["admin", "create", email, "--password-stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run rpibroker admin create");
    writeln!(child.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (c, r) = sign_in(broker.api, email, PASSWORD).await;
    assert_eq!(r.status, 303, "{}", r.body);
    c
}

/// Signs in `email` from a fresh client on the broker's web address
/// `addr`; returns the client and the sign-in response.
pub async fn sign_in(addr: SocketAddr, email: &str, password: &str) -> (WebClient, Response) {
    let mut c = WebClient::new(addr);
    let form = c.get("/signin").await;
    let r = c
        .post(
            "/signin",
            &[
                ("csrf", &csrf_of(&form.body)),
                ("email", email),
                ("password", password),
            ],
        )
        .await;
    (c, r)
}

/// The text of the element with `data-testid="id"` in a page, unescaped.
pub fn testid(page: &str, id: &str) -> String {
    let marker = format!("data-testid=\"{id}\">");
    let start = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no {id} in {page}"))
        + marker.len();
    let end = page[start..].find('<').unwrap() + start;
    page[start..end]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// Lists (or unlists) `name` at `rate` per hour with the form on My devices.
pub async fn list_at(owner: &mut WebClient, name: &str, listed: bool, rate: &str) -> Response {
    let page = owner.get("/devices").await;
    let csrf = csrf_of(&page.body);
    let mut fields = vec![("csrf", csrf.as_str()), ("name", name), ("rate", rate)];
    if listed {
        fields.push(("listed", "on"));
    }
    owner.post("/devices/listing", &fields).await
}

/// Where the page taking a renter to a payment provider's checkout sends
/// them (its link, also its refresh target).
pub fn checkout_link(page: &str) -> String {
    let end = page
        .find("\" data-testid=\"checkout-link\"")
        .unwrap_or_else(|| panic!("no checkout link in {page}"));
    let start = page[..end].rfind("href=\"").unwrap() + "href=\"".len();
    let link = page[start..end].replace("&amp;", "&");
    assert!(
        page.contains(&format!("content=\"0; url={}\"", &page[start..end])),
        "the page refreshes to the checkout: {page}"
    );
    link
}
