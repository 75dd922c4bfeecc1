//! What a server's `audit_payload` setting keeps of a call's arguments and result.
//!
//! The hash is BLAKE3 over the JSON text exactly as it crossed the data plane (arguments as
//! the client sent them, the result as the upstream sent it): the data plane never
//! re-encodes params or results, so hashing those bytes costs no parse.

use canopy_proto::v1::AuditPayload;

/// The mark appended to a `FULL` payload cut at the limit (the text is no longer JSON).
pub(super) const CUT_MARK: &str = "…[cut]";

/// The text to record for `json` under `mode`; `None` for `OFF`.
pub(super) fn keep(mode: AuditPayload, json: &str, max_bytes: usize) -> Option<String> {
    match mode {
        AuditPayload::Off => None,
        AuditPayload::Hash => Some(blake3::hash(json.as_bytes()).to_hex().to_string()),
        AuditPayload::Full if json.len() <= max_bytes => Some(json.to_owned()),
        AuditPayload::Full => {
            let mut end = max_bytes;
            while !json.is_char_boundary(end) {
                end -= 1;
            }
            let mut s = String::with_capacity(end + CUT_MARK.len());
            s.push_str(&json[..end]);
            s.push_str(CUT_MARK);
            Some(s)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_hash_full_and_cut() {
        let j = r#"{"q":"héllo"}"#;
        assert_eq!(keep(AuditPayload::Off, j, 100), None);
        let h = keep(AuditPayload::Hash, j, 100).unwrap_or_default();
        assert_eq!(h, blake3::hash(j.as_bytes()).to_hex().to_string());
        assert_eq!(h.len(), 64);
        assert_eq!(keep(AuditPayload::Full, j, 100).as_deref(), Some(j));
        // 8 bytes would split "é" (bytes 7-8): the cut backs off to a character boundary.
        let cut = keep(AuditPayload::Full, j, 8).unwrap_or_default();
        assert_eq!(cut, format!("{{\"q\":\"h{CUT_MARK}"));
        assert_eq!(keep(AuditPayload::Full, j, j.len()).as_deref(), Some(j));
    }
}
