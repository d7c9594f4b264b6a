//! Keys and values as a terminal shows them, and keys as a command line gives them.

use anyhow::bail;

/// `bytes` with printable ASCII as is and everything else as `\xNN` escapes;
/// longer than `max` bytes shows the first `max` and the total length.
pub fn escape(bytes: &[u8], max: usize) -> String {
    let shown = &bytes[..bytes.len().min(max)];
    let mut s: String = shown
        .iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    if bytes.len() > max {
        s.push_str(&format!("... ({} bytes)", bytes.len()));
    }
    s
}

/// A key from the command line: as UTF-8 text, or from hex digits when `hex`.
pub fn parse_key(s: &str, hex: bool) -> anyhow::Result<Vec<u8>> {
    if !hex {
        return Ok(s.as_bytes().to_vec());
    }
    let digits = s.strip_prefix("0x").unwrap_or(s);
    if digits.len() & 1 == 1 {
        bail!("hex key {s:?} has an odd number of digits");
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16)
                .map_err(|_| anyhow::anyhow!("{s:?} is not hex"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_and_parse() {
        assert_eq!(escape(b"ab\x00\n", 10), "ab\\x00\\n");
        assert_eq!(escape(b"abcdef", 2), "ab... (6 bytes)");
        assert_eq!(parse_key("0x00ff", true).expect("hex"), vec![0, 255]);
        assert_eq!(parse_key("k1", false).expect("text"), b"k1".to_vec());
        assert!(parse_key("abc", true).is_err());
    }
}
