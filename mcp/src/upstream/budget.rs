//! Per-call limits on what an upstream may send before its response.
//!
//! Single messages are bounded elsewhere (reply body, SSE event); this bounds their sum, so
//! an upstream that streams progress notifications without end cannot make one call cost
//! unbounded memory (when notifications are kept) or unbounded work (when they are relayed
//! or dropped).

/// Default of [`CallLimits::max_bytes`]: 16 MiB.
pub const DEFAULT_MAX_CALL_BYTES: usize = 16 * 1024 * 1024;
/// Default of [`CallLimits::max_notifications`].
pub const DEFAULT_MAX_CALL_NOTIFICATIONS: usize = 10_000;

/// Bounds on the messages (notifications, server-to-client requests) one call may receive
/// before its response. Past either, the call fails with [`super::UpstreamError::CallLimit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallLimits {
    /// Total bytes of those messages.
    pub max_bytes: usize,
    /// Number of notifications.
    pub max_notifications: usize,
    /// Whether the caller gets the notifications. `false` for a caller that cannot deliver
    /// them: they still count against the limits, and are dropped as they arrive.
    pub keep_notifications: bool,
}

impl Default for CallLimits {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_CALL_BYTES,
            max_notifications: DEFAULT_MAX_CALL_NOTIFICATIONS,
            keep_notifications: true,
        }
    }
}

/// What one call has received so far, against its limits.
#[derive(Debug)]
pub(crate) struct Budget {
    limits: CallLimits,
    bytes: usize,
    notifications: usize,
}

impl Budget {
    pub(crate) fn new(limits: CallLimits) -> Self {
        Self {
            limits,
            bytes: 0,
            notifications: 0,
        }
    }

    /// Whether notifications are kept for the caller.
    pub(crate) fn keeps(&self) -> bool {
        self.limits.keep_notifications
    }

    /// Counts one message of `bytes` received before the response. `Err` says which limit
    /// it crossed.
    pub(crate) fn take(&mut self, bytes: usize, notification: bool) -> Result<(), String> {
        self.bytes = self.bytes.saturating_add(bytes);
        if self.bytes > self.limits.max_bytes {
            return Err(format!(
                "sent more than {} bytes of messages before its response",
                self.limits.max_bytes
            ));
        }
        if notification {
            self.notifications += 1;
            if self.notifications > self.limits.max_notifications {
                return Err(format!(
                    "sent more than {} notifications before its response",
                    self.limits.max_notifications
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_bytes_and_notifications_separately() {
        let mut b = Budget::new(CallLimits {
            max_bytes: 10,
            max_notifications: 2,
            keep_notifications: true,
        });
        assert!(b.take(4, true).is_ok());
        assert!(b.take(4, false).is_ok());
        let over = b.take(3, false).err().unwrap_or_default();
        assert!(over.contains("more than 10 bytes"), "{over}");

        let mut b = Budget::new(CallLimits {
            max_bytes: 100,
            max_notifications: 2,
            keep_notifications: true,
        });
        assert!(b.take(1, true).is_ok() && b.take(1, true).is_ok());
        let over = b.take(1, true).err().unwrap_or_default();
        assert!(over.contains("more than 2 notifications"), "{over}");
    }
}
