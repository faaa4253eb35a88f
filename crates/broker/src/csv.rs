//! CSV as the broker writes it (wallet movements, payout exports) and reads
//! it back (payout imports): RFC 4180 fields, one record per line, and no
//! field a spreadsheet would run as a formula.

/// A field, quoted when it must be, and never read as a formula by a
/// spreadsheet.
pub fn field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

/// The fields of one line (without its line ending); `None` when a quoted
/// field is not closed or text follows its closing quote.
pub fn parse_line(line: &str) -> Option<Vec<String>> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next()? {
                    '"' if chars.peek() == Some(&'"') => {
                        chars.next();
                        value.push('"');
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
            match chars.next() {
                None => {
                    fields.push(value);
                    return Some(fields);
                }
                Some(',') => {}
                Some(_) => return None,
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(value.trim().to_string());
                        return Some(fields);
                    }
                    Some(',') => break,
                    Some('"') => return None,
                    Some(c) => value.push(c),
                }
            }
        }
        fields.push(value.trim().to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_never_formulas_and_read_back() {
        assert_eq!(field("plain"), "plain");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(field("=1+1"), "'=1+1");
        let line = format!("{},{},,{}", field("a,b"), field("say \"hi\""), field("x"));
        assert_eq!(
            parse_line(&line).unwrap(),
            ["a,b", "say \"hi\"", "", "x"].map(String::from)
        );
        assert_eq!(parse_line(" a , b ").unwrap(), ["a", "b"].map(String::from));
        assert!(parse_line("\"open").is_none());
        assert!(parse_line("\"a\"b").is_none());
        assert!(parse_line("a\"b").is_none());
    }
}
