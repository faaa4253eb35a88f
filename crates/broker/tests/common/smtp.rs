//! A small SMTP server for tests: SMTP on 127.0.0.1 port 0, plain or with
//! TLS from the first byte (a fresh certificate for 127.0.0.1), that
//! requires AUTH (PLAIN or LOGIN) with its login, and records every message
//! it accepts with the login that sent it. Bounded: line length, message
//! size and connection time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

use super::{DEADLINE, wait_for};

/// The login the server accepts.
pub const USERNAME: &str = "broker-mail";
pub const PASSWORD: &str = "smtp-Pass-7731";
/// The sender the broker is configured with.
pub const FROM: &str = "broker@example.org";

const MAX_LINE: usize = 4096;
const MAX_MESSAGE: usize = 1 << 20;
const CONNECTION_TIME: Duration = Duration::from_secs(30);

/// A message as the server received it.
#[derive(Debug, Clone)]
pub struct Received {
    /// The login the client authenticated with.
    pub login: (String, String),
    pub mail_from: String,
    pub rcpt_to: Vec<String>,
    /// Header names lowercased, values unfolded.
    pub headers: BTreeMap<String, String>,
    /// The body, decoded from its transfer encoding, with `\n` line ends.
    pub text: String,
}

/// Headers and decoded body of a raw message (as sent, or as an `.eml` file).
pub fn parse(raw: &str) -> (BTreeMap<String, String>, String) {
    let raw = raw.replace("\r\n", "\n");
    let (head, body) = raw.split_once("\n\n").unwrap_or((&raw, ""));
    let mut headers = BTreeMap::new();
    let mut last: Option<String> = None;
    for line in head.lines() {
        if line.starts_with([' ', '\t']) {
            if let Some(name) = &last {
                let v: &mut String = headers.get_mut(name).unwrap();
                v.push(' ');
                v.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            let name = name.trim().to_ascii_lowercase();
            headers.insert(name.clone(), value.trim().to_string());
            last = Some(name);
        }
    }
    let encoding = headers
        .get("content-transfer-encoding")
        .map(|e| e.to_ascii_lowercase())
        .unwrap_or_default();
    let text = match encoding.as_str() {
        "quoted-printable" => quoted_printable(body),
        "base64" => String::from_utf8(
            BASE64
                .decode(body.split_whitespace().collect::<String>())
                .expect("base64 body"),
        )
        .expect("UTF-8 body"),
        _ => body.to_string(),
    };
    (headers, text)
}

fn quoted_printable(body: &str) -> String {
    let joined = body.replace("=\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 3 <= bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or_default();
            if let Ok(b) = u8::from_str_radix(hex, 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).expect("UTF-8 body")
}

pub struct SmtpServer {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    task: tokio::task::JoinHandle<()>,
    /// Holds the password file the broker reads, and the TLS certificate.
    dir: tempfile::TempDir,
    /// The certificate (PEM) a TLS server presents.
    pub ca_file: Option<PathBuf>,
}

impl SmtpServer {
    /// A plain SMTP server.
    pub async fn start() -> Self {
        Self::spawn(tempfile::tempdir().unwrap(), None).await
    }

    /// An SMTP server with TLS from the first byte, whose self-signed
    /// certificate for 127.0.0.1 is in [`SmtpServer::ca_file`].
    pub async fn start_tls() -> Self {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ca.pem"), cert.cert.pem()).unwrap();
        let key =
            rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.cert.der().clone()], key)
        .unwrap();
        Self::spawn(dir, Some(tokio_rustls::TlsAcceptor::from(Arc::new(config)))).await
    }

    async fn spawn(dir: tempfile::TempDir, tls: Option<tokio_rustls::TlsAcceptor>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let store = received.clone();
        let ca_file = tls.as_ref().map(|_| dir.path().join("ca.pem"));
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (store, tls) = (store.clone(), tls.clone());
                tokio::spawn(tokio::time::timeout(CONNECTION_TIME, async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                session(stream, store).await;
                            }
                        }
                        None => session(stream, store).await,
                    }
                }));
            }
        });
        Self {
            addr,
            received,
            task,
            dir,
            ca_file,
        }
    }

    /// The `[mail]` table that points a broker here, with the login in a
    /// password file (and for TLS, the server's certificate as its CA).
    pub fn broker_config(&self) -> String {
        let password_file: PathBuf = self.dir.path().join("smtp-password");
        std::fs::write(&password_file, format!("{PASSWORD}\n")).unwrap();
        let security = match &self.ca_file {
            Some(ca) => format!("smtp_security = \"tls\"\nsmtp_ca_file = {ca:?}\n"),
            None => "smtp_security = \"plain\"\n".to_string(),
        };
        format!(
            "[mail]\nfrom = \"rpibroker <{FROM}>\"\nsmtp_host = \"127.0.0.1\"\nsmtp_port = {}\n{security}smtp_username = \"{USERNAME}\"\nsmtp_password_file = {:?}\n",
            self.addr.port(),
            password_file
        )
    }

    /// Every message received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }

    /// Waits until at least `count` messages arrived; returns them all.
    pub async fn wait_for(&self, count: usize) -> Vec<Received> {
        wait_for(&format!("{count} messages"), DEADLINE, || async {
            let all = self.received();
            (all.len() >= count).then_some(all)
        })
        .await
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn read_line<R: AsyncRead + Unpin>(r: &mut BufReader<R>) -> Option<String> {
    let mut line = Vec::new();
    let n = (&mut *r)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut line)
        .await
        .ok()?;
    if n == 0 || !line.ends_with(b"\n") {
        return None;
    }
    let text = String::from_utf8(line).ok()?;
    Some(text.trim_end_matches(['\r', '\n']).to_string())
}

fn decode(b64: &str) -> Option<String> {
    String::from_utf8(BASE64.decode(b64.trim()).ok()?).ok()
}

/// The path of `MAIL FROM:<a@b>`-style arguments.
fn path_of(arg: &str) -> String {
    let arg = arg.split_once(':').map_or(arg, |(_, v)| v).trim();
    let arg = arg.split_whitespace().next().unwrap_or_default();
    arg.trim_start_matches('<')
        .trim_end_matches('>')
        .to_string()
}

async fn session<S: AsyncRead + AsyncWrite + Unpin>(stream: S, store: Arc<Mutex<Vec<Received>>>) {
    let (read, mut write) = tokio::io::split(stream);
    let mut r = BufReader::new(read);
    macro_rules! say {
        ($text:expr) => {
            if write.write_all($text.as_bytes()).await.is_err() {
                return;
            }
        };
    }
    say!("220 test-smtp ESMTP\r\n");
    let mut login: Option<(String, String)> = None;
    let mut from: Option<String> = None;
    let mut to: Vec<String> = Vec::new();
    while let Some(line) = read_line(&mut r).await {
        let (verb, arg) = line.split_once(' ').unwrap_or((&line, ""));
        match verb.to_ascii_uppercase().as_str() {
            "EHLO" => say!("250-test-smtp\r\n250-AUTH PLAIN LOGIN\r\n250 8BITMIME\r\n"),
            "HELO" => say!("250 test-smtp\r\n"),
            "AUTH" => {
                let mut parts = arg.split_whitespace();
                let mechanism = parts.next().unwrap_or_default().to_ascii_uppercase();
                let initial = parts.next().map(str::to_string);
                let given = match mechanism.as_str() {
                    "PLAIN" => {
                        let response = match initial {
                            Some(i) => i,
                            None => {
                                say!("334 \r\n");
                                let Some(l) = read_line(&mut r).await else {
                                    return;
                                };
                                l
                            }
                        };
                        decode(&response).and_then(|d| {
                            let mut f = d.split('\0');
                            let _authzid = f.next()?;
                            Some((f.next()?.to_string(), f.next()?.to_string()))
                        })
                    }
                    "LOGIN" => {
                        let user = match initial {
                            Some(i) => i,
                            None => {
                                say!("334 VXNlcm5hbWU6\r\n");
                                let Some(l) = read_line(&mut r).await else {
                                    return;
                                };
                                l
                            }
                        };
                        say!("334 UGFzc3dvcmQ6\r\n");
                        let Some(pass) = read_line(&mut r).await else {
                            return;
                        };
                        decode(&user).zip(decode(&pass))
                    }
                    _ => None,
                };
                match given {
                    Some((u, p)) if u == USERNAME && p == PASSWORD => {
                        login = Some((u, p));
                        say!("235 2.7.0 Authentication successful\r\n");
                    }
                    _ => say!("535 5.7.8 Authentication credentials invalid\r\n"),
                }
            }
            "MAIL" if login.is_none() => say!("530 5.7.0 Authentication required\r\n"),
            "MAIL" => {
                from = Some(path_of(arg));
                to.clear();
                say!("250 2.1.0 OK\r\n");
            }
            "RCPT" if from.is_some() && to.len() < 10 => {
                to.push(path_of(arg));
                say!("250 2.1.5 OK\r\n");
            }
            "RCPT" => say!("503 5.5.1 Bad sequence\r\n"),
            "DATA" if !to.is_empty() => {
                say!("354 End data with <CR><LF>.<CR><LF>\r\n");
                let mut data = String::new();
                loop {
                    let Some(l) = read_line(&mut r).await else {
                        return;
                    };
                    if l == "." {
                        break;
                    }
                    data.push_str(l.strip_prefix('.').unwrap_or(&l));
                    data.push_str("\r\n");
                    if data.len() > MAX_MESSAGE {
                        say!("552 5.3.4 Message too big\r\n");
                        return;
                    }
                }
                let (headers, text) = parse(&data);
                store.lock().unwrap().push(Received {
                    login: login.clone().expect("authenticated"),
                    mail_from: from.take().unwrap_or_default(),
                    rcpt_to: std::mem::take(&mut to),
                    headers,
                    text,
                });
                say!("250 2.0.0 OK: queued\r\n");
            }
            "DATA" => say!("503 5.5.1 Bad sequence\r\n"),
            "RSET" => {
                from = None;
                to.clear();
                say!("250 2.0.0 OK\r\n");
            }
            "NOOP" => say!("250 2.0.0 OK\r\n"),
            "QUIT" => {
                say!("221 2.0.0 Bye\r\n");
                return;
            }
            _ => say!("502 5.5.2 Command not recognized\r\n"),
        }
    }
}
