//! Unknown signing keys seen by requests, queued for the control plane (which fetches the
//! provider's JWKS again and streams the new keys), rate-limited per (issuer, kid).

use std::collections::HashMap;
use std::sync::Mutex;
use tokio::sync::Notify;

/// How often one (issuer, kid) is reported: a client spraying tokens must not turn into
/// a stream of reports (the control plane has its own fetch cooldown too).
const KID_REPORT_COOLDOWN_MS: u64 = 30_000;
/// Pending reports kept between sends; more are dropped (a later one still comes).
const KID_REPORT_MAX_PENDING: usize = 16;
/// Remembered (issuer, kid) pairs; past this, forgotten ones may be reported again.
const KID_REPORT_MEMORY: usize = 1024;

#[derive(Default)]
pub(super) struct KidReports {
    inner: Mutex<KidReportsInner>,
    pub(super) wake: Notify,
}

#[derive(Default)]
struct KidReportsInner {
    last_ms: HashMap<(String, String), u64>,
    pending: Vec<(String, String)>,
}

impl KidReports {
    pub(super) fn report(&self, issuer: &str, kid: &str, now_ms: u64) {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if g.pending.len() >= KID_REPORT_MAX_PENDING {
            return;
        }
        // The kid is attacker-chosen text: bounded before it is kept or sent.
        let kid: String = kid.chars().take(128).collect();
        let key = (issuer.to_owned(), kid);
        if g.last_ms
            .get(&key)
            .is_some_and(|t| now_ms.saturating_sub(*t) < KID_REPORT_COOLDOWN_MS)
        {
            return;
        }
        if g.last_ms.len() >= KID_REPORT_MEMORY {
            g.last_ms
                .retain(|_, t| now_ms.saturating_sub(*t) < KID_REPORT_COOLDOWN_MS);
        }
        g.last_ms.insert(key.clone(), now_ms);
        g.pending.push(key);
        drop(g);
        self.wake.notify_one();
    }

    pub(super) fn take(&self) -> Vec<(String, String)> {
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut g.pending)
    }
}
