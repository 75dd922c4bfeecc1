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

/// Random ids for one event: drawn at once from the thread's generator, turned into hex
/// only for what the event lacks.
pub(super) struct Ids([u8; 40]);

impl Ids {
    pub(super) fn new() -> Self {
        let mut raw = [0u8; 40];
        rand::rng().fill_bytes(&mut raw);
        Self(raw)
    }

    /// The event id (16 bytes).
    pub(super) fn event(&self) -> Vec<u8> {
        self.0[..16].to_vec()
    }

    /// A span id (16 hex).
    pub(super) fn span(&self) -> String {
        hex(&self.0[16..24])
    }

    /// A trace id (32 hex).
    pub(super) fn trace(&self) -> String {
        hex(&self.0[24..40])
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut buf = [0u8; 32];
    let out = &mut buf[..bytes.len() * 2];
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = HEX[usize::from(b >> 4)];
        pair[1] = HEX[usize::from(b & 0xf)];
    }
    // Only ASCII hex digits were written.
    String::from_utf8_lossy(out).into_owned()
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
        let (a, b) = (Ids::new(), Ids::new());
        assert_eq!(a.event().len(), 16);
        assert_eq!(a.span().len(), 16);
        assert_eq!(a.trace().len(), 32);
        assert!(trace_id_of(&format!("00-{}-{}-01", a.trace(), a.span())).is_some());
        assert_ne!(a.event(), b.event());
        assert_ne!(a.span(), b.span());
        assert_ne!(a.trace(), b.trace());
    }
}
