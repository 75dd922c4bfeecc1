//! W3C trace context: the caller's trace id when it sent one (`traceparent` header, or
//! `params._meta.traceparent` per SEP-414), else a new one; the data plane's span id is
//! always new. With `--otlp-endpoint` the ids are the request's SERVER span's
//! (`telemetry/`), which takes its parent from [`parse`].

use rand::RngCore;

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The trace id, parent span id and flags of a `traceparent` value
/// (`00-<32 hex>-<16 hex>-<2 hex>`), when it is a valid one (ids not all zeros).
pub(super) fn parse(traceparent: &str) -> Option<(&str, &str, &str)> {
    let mut parts = traceparent.trim().split('-');
    let version = parts.next()?;
    let trace = parts.next()?;
    let parent = parts.next()?;
    let flags = parts.next()?;
    let hex = |s: &str, n: usize| {
        s.len() == n
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    let ok = hex(version, 2)
        && version != "ff"
        && hex(trace, 32)
        && hex(parent, 16)
        && hex(flags, 2)
        && trace.bytes().any(|b| b != b'0')
        && parent.bytes().any(|b| b != b'0');
    ok.then_some((trace, parent, flags))
}

/// The event id (16 bytes), a span id (16 hex) and, when `new_trace`, a trace id (32 hex):
/// one draw from the thread's generator.
pub(super) fn ids(new_trace: bool) -> (Vec<u8>, String, Option<String>) {
    let mut raw = [0u8; 40];
    rand::rng().fill_bytes(&mut raw);
    let id = raw[..16].to_vec();
    let span = hex(&raw[16..24]);
    (id, span, new_trace.then(|| hex(&raw[24..40])))
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0xf)] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trace_id_of(traceparent: &str) -> Option<&str> {
        parse(traceparent).map(|(trace, _, _)| trace)
    }

    #[test]
    fn takes_valid_traceparents_only() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(trace_id_of(tp), Some("4bf92f3577b34da6a3ce929d0e0e4736"));
        assert_eq!(
            trace_id_of(&format!(" {tp} ")),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
        ] {
            assert_eq!(trace_id_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn generated_ids_have_their_sizes_and_differ() {
        let (id, span, trace) = ids(true);
        let trace = trace.unwrap_or_default();
        assert_eq!(id.len(), 16);
        assert_eq!(span.len(), 16);
        assert_eq!(trace.len(), 32);
        assert!(trace_id_of(&format!("00-{trace}-{span}-01")).is_some());
        let (id2, span2, none) = ids(false);
        assert_ne!(id, id2);
        assert_ne!(span, span2);
        assert_eq!(none, None);
    }
}
