//! One live `Upstream` per registered server, reused by `invoke` so sessions and stdio
//! children are not re-created per call.

use super::convert::upstream_config;
use crate::store::ServerRecord;
use canopy_mcp::upstream::Upstream;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

#[derive(Default)]
pub(super) struct Upstreams {
    // std Mutex: never held across an await.
    map: Mutex<HashMap<String, Upstream>>,
}

impl Upstreams {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Upstream>> {
        // Only handles live in the map; a panic elsewhere cannot corrupt it.
        self.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The cached upstream of `record`, or a new one when none is cached or the cached
    /// one was configured from a different spec.
    pub(super) fn for_record(&self, record: &ServerRecord) -> Upstream {
        let config = upstream_config(&record.spec);
        let mut map = self.lock();
        if let Some(up) = map.get(&record.spec.name) {
            if up.config() == &config {
                return up.clone();
            }
        }
        let up = Upstream::new(config);
        if let Some(old) = map.insert(record.spec.name.clone(), up.clone()) {
            retire(old);
        }
        up
    }

    /// Caches `up` for `name` (after a successful registration or refresh).
    pub(super) fn replace(&self, name: &str, up: Upstream) {
        if let Some(old) = self.lock().insert(name.to_owned(), up) {
            retire(old);
        }
    }

    pub(super) fn remove(&self, name: &str) {
        if let Some(old) = self.lock().remove(name) {
            retire(old);
        }
    }
}

/// Closes a replaced or removed upstream in the background (stops its stdio child).
fn retire(up: Upstream) {
    tokio::spawn(async move { up.shutdown().await });
}
