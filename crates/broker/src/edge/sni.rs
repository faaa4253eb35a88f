//! Reading the server name (SNI) from a TLS ClientHello without terminating
//! TLS. Handles a ClientHello split across several TLS records; everything is
//! bounded by [`MAX_CLIENT_HELLO`].

/// Most bytes read while looking for the ClientHello's end.
pub const MAX_CLIENT_HELLO: usize = 32 * 1024;

const RECORD_HANDSHAKE: u8 = 22;
const HANDSHAKE_CLIENT_HELLO: u8 = 1;
const EXTENSION_SERVER_NAME: u16 = 0;
const NAME_TYPE_HOST: u8 = 0;
/// Largest TLS record payload (RFC 8446 §5.1) plus room for compression/expansion.
const MAX_RECORD: usize = 16384 + 2048;

/// Why the bytes are not a usable ClientHello.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SniError {
    #[error("not a TLS handshake")]
    NotTls,
    #[error("the first handshake message is not a ClientHello")]
    NotClientHello,
    #[error("the ClientHello is larger than {MAX_CLIENT_HELLO} bytes")]
    TooLarge,
    #[error("the ClientHello is malformed")]
    Malformed,
}

/// Result of looking at the bytes received so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Sni {
    /// The ClientHello is not complete yet: nothing changes until at least
    /// this many bytes have arrived.
    NeedMore(usize),
    /// The ClientHello names this host (lowercase ASCII).
    Name(String),
    /// The ClientHello is complete and has no server name.
    Missing,
}

/// Looks for the SNI in the TLS bytes a client sent first.
pub fn parse(buf: &[u8]) -> Result<Sni, SniError> {
    let mut handshake = Vec::new();
    let mut rest = buf;
    loop {
        if let Some(body) = complete_message(&handshake)? {
            return server_name(body);
        }
        if rest.len() < 5 {
            return need_more(buf, buf.len() - rest.len() + 5);
        }
        if rest[0] != RECORD_HANDSHAKE || rest[1] != 3 {
            return Err(SniError::NotTls);
        }
        let len = usize::from(u16::from_be_bytes([rest[3], rest[4]]));
        if len == 0 || len > MAX_RECORD {
            return Err(SniError::Malformed);
        }
        if rest.len() < 5 + len {
            return need_more(buf, buf.len() - rest.len() + 5 + len);
        }
        handshake.extend_from_slice(&rest[5..5 + len]);
        rest = &rest[5 + len..];
    }
}

fn need_more(buf: &[u8], needed: usize) -> Result<Sni, SniError> {
    if buf.len() >= MAX_CLIENT_HELLO || needed > MAX_CLIENT_HELLO {
        Err(SniError::TooLarge)
    } else {
        Ok(Sni::NeedMore(needed))
    }
}

/// The ClientHello body, once the handshake bytes hold all of it.
fn complete_message(handshake: &[u8]) -> Result<Option<&[u8]>, SniError> {
    if handshake.len() < 4 {
        return Ok(None);
    }
    if handshake[0] != HANDSHAKE_CLIENT_HELLO {
        return Err(SniError::NotClientHello);
    }
    let len = u32::from_be_bytes([0, handshake[1], handshake[2], handshake[3]]) as usize;
    if len > MAX_CLIENT_HELLO {
        return Err(SniError::TooLarge);
    }
    Ok(handshake.get(4..4 + len))
}

/// A cursor over a byte slice whose reads fail instead of panicking.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], SniError> {
        if self.0.len() < n {
            return Err(SniError::Malformed);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, SniError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, SniError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn vec8(&mut self) -> Result<&'a [u8], SniError> {
        let n = self.u8()?;
        self.take(n.into())
    }

    fn vec16(&mut self) -> Result<&'a [u8], SniError> {
        let n = self.u16()?;
        self.take(n.into())
    }
}

fn server_name(body: &[u8]) -> Result<Sni, SniError> {
    let mut r = Reader(body);
    r.take(2 + 32)?; // legacy_version, random
    r.vec8()?; // legacy_session_id
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    if r.0.is_empty() {
        return Ok(Sni::Missing);
    }
    let mut exts = Reader(r.vec16()?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        if kind != EXTENSION_SERVER_NAME {
            continue;
        }
        let mut list = Reader(Reader(data).vec16()?);
        while !list.0.is_empty() {
            let name_type = list.u8()?;
            let name = list.vec16()?;
            if name_type == NAME_TYPE_HOST {
                let name = std::str::from_utf8(name).map_err(|_| SniError::Malformed)?;
                if name.is_empty() || name.len() > 253 || !name.is_ascii() {
                    return Err(SniError::Malformed);
                }
                return Ok(Sni::Name(name.to_ascii_lowercase()));
            }
        }
        return Ok(Sni::Missing);
    }
    Ok(Sni::Missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ClientHello with the given extensions block.
    fn client_hello(extensions: Option<Vec<u8>>) -> Vec<u8> {
        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.push(0); // session id
        body.extend([0, 2, 0x13, 0x01]); // one cipher suite
        body.extend([1, 0]); // null compression
        if let Some(ext) = extensions {
            body.extend((ext.len() as u16).to_be_bytes());
            body.extend(ext);
        }
        let mut hs = vec![HANDSHAKE_CLIENT_HELLO];
        hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend(body);
        hs
    }

    fn sni_extension(name: &str) -> Vec<u8> {
        let mut entry = vec![NAME_TYPE_HOST];
        entry.extend((name.len() as u16).to_be_bytes());
        entry.extend(name.as_bytes());
        let mut list = (entry.len() as u16).to_be_bytes().to_vec();
        list.extend(entry);
        let mut ext = EXTENSION_SERVER_NAME.to_be_bytes().to_vec();
        ext.extend((list.len() as u16).to_be_bytes());
        ext.extend(list);
        ext
    }

    fn records(handshake: &[u8], chunk: usize) -> Vec<u8> {
        handshake
            .chunks(chunk)
            .flat_map(|c| {
                let mut r = vec![RECORD_HANDSHAKE, 3, 1];
                r.extend((c.len() as u16).to_be_bytes());
                r.extend(c);
                r
            })
            .collect()
    }

    #[test]
    fn reads_the_name_from_one_or_many_records() {
        let hs = client_hello(Some(sni_extension("Pi.LocalHost")));
        for chunk in [hs.len(), 10, 1] {
            let bytes = records(&hs, chunk);
            assert_eq!(parse(&bytes), Ok(Sni::Name("pi.localhost".into())));
            assert_eq!(
                parse(&bytes[..bytes.len() - 1]),
                Ok(Sni::NeedMore(bytes.len()))
            );
        }
    }

    #[test]
    fn no_extension_or_no_sni_is_missing() {
        assert_eq!(parse(&records(&client_hello(None), 4096)), Ok(Sni::Missing));
        let other_ext = vec![0, 10, 0, 2, 0, 0];
        assert_eq!(
            parse(&records(&client_hello(Some(other_ext)), 4096)),
            Ok(Sni::Missing)
        );
    }

    #[test]
    fn garbage_is_refused() {
        assert_eq!(parse(b"GET / HTTP/1.1\r\n"), Err(SniError::NotTls));
        assert_eq!(parse(&[22, 3, 1, 0, 0]), Err(SniError::Malformed));
        let mut hs = client_hello(Some(sni_extension("a")));
        hs[0] = 2;
        assert_eq!(parse(&records(&hs, 4096)), Err(SniError::NotClientHello));
        // A length that runs past the message.
        let mut hs = client_hello(Some(sni_extension("pi.localhost")));
        let n = hs.len();
        hs[n - 14] = 0xff;
        assert_eq!(parse(&records(&hs, 4096)), Err(SniError::Malformed));
    }

    #[test]
    fn endless_handshakes_are_bounded() {
        let mut hs = vec![HANDSHAKE_CLIENT_HELLO, 0, 0xff, 0xff];
        hs.extend(vec![0u8; MAX_CLIENT_HELLO]);
        let bytes = records(&hs, 16000);
        assert!(matches!(
            parse(&bytes[..MAX_CLIENT_HELLO]),
            Err(SniError::TooLarge)
        ));
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let hs = client_hello(Some(sni_extension("pi.localhost")));
        let bytes = records(&hs, 4096);
        for i in 0..bytes.len() {
            for v in [0u8, 1, 0x7f, 0xff] {
                let mut b = bytes.clone();
                b[i] = v;
                let _ = parse(&b);
            }
        }
    }
}
