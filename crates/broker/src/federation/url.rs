//! A broker's base URL: an `http` or `https` origin, which the target URI
//! and authority of signed requests are built from.

/// A base URL reduced to what signatures cover.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// `scheme://host[:port]`, no trailing slash.
    pub origin: String,
    /// `host[:port]`.
    pub authority: String,
}

impl Origin {
    /// Parses `url`, which may end in `/` but has no other path, query,
    /// fragment or user name.
    pub fn parse(url: &str) -> Result<Self, String> {
        if url.len() > 200 {
            return Err("a broker URL is at most 200 characters".into());
        }
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("{url:?} must start with http:// or https://"));
        }
        if parsed.path() != "/"
            || parsed.query().is_some()
            || parsed.fragment().is_some()
            || !parsed.username().is_empty()
            || parsed.password().is_some()
        {
            return Err(format!(
                "{url:?} must be just scheme, host and port, like https://broker.example"
            ));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| format!("{url:?} has no host"))?;
        let authority = match parsed.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        Ok(Self {
            origin: format!("{}://{authority}", parsed.scheme()),
            authority,
        })
    }

    /// The absolute URL of `path_and_query` on this origin.
    pub fn target(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.origin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_normalised_and_paths_refused() {
        let o = Origin::parse("http://127.0.0.1:8000/").unwrap();
        assert_eq!(o.origin, "http://127.0.0.1:8000");
        assert_eq!(o.authority, "127.0.0.1:8000");
        assert_eq!(
            Origin::parse("https://Broker.Example:443")
                .unwrap()
                .authority,
            "broker.example"
        );
        for bad in [
            "ftp://x.example",
            "https://x.example/sub",
            "https://u@x.example",
            "https://x.example/?q",
            "x.example",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad}");
        }
    }
}
