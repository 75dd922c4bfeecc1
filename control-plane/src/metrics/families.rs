//! Every metric family of the control plane: the one place a name, its type and its help
//! are declared. Collectors refer to these; a new family goes here and into [`ALL`].

use super::text::{Family, Kind};

pub const ADMIN_RPCS: Family = Family {
    name: "canopy_cp_admin_rpcs_total",
    kind: Kind::Counter,
    help: "Admin API calls by result: ok, or error (any gRPC status but OK, including refused credentials).",
};
pub const DATA_PLANES_CONNECTED: Family = Family {
    name: "canopy_cp_data_planes_connected",
    kind: Kind::Gauge,
    help: "Data planes with an open Sync stream.",
};
pub const DATA_PLANES_KNOWN: Family = Family {
    name: "canopy_cp_data_planes_known",
    kind: Kind::Gauge,
    help: "Data planes seen since this control plane started, connected or not.",
};
pub const REVISION: Family = Family {
    name: "canopy_cp_revision",
    kind: Kind::Gauge,
    help: "The store's current revision (data planes converge to it).",
};
pub const SYNC_STREAMS: Family = Family {
    name: "canopy_cp_sync_streams",
    kind: Kind::Gauge,
    help: "Sync sessions open now.",
};
pub const SYNC_STREAMS_OPENED: Family = Family {
    name: "canopy_cp_sync_streams_opened_total",
    kind: Kind::Counter,
    help: "Sync sessions started (a data plane said hello), reconnects included.",
};
pub const AUDIT_STREAMS: Family = Family {
    name: "canopy_cp_audit_streams",
    kind: Kind::Gauge,
    help: "Audit ingest streams from data planes open now.",
};
pub const IDP_REFRESH_ATTEMPTS: Family = Family {
    name: "canopy_cp_idp_refresh_attempts_total",
    kind: Kind::Counter,
    help: "Fetches of an identity provider's discovery document and keys after create/update (periodic and unknown-kid ones).",
};
pub const IDP_REFRESH_FAILURES: Family = Family {
    name: "canopy_cp_idp_refresh_failures_total",
    kind: Kind::Counter,
    help: "Those fetches that failed (the last good keys were kept).",
};
pub const IDP_CONSECUTIVE_FAILURES: Family = Family {
    name: "canopy_cp_idp_consecutive_failures",
    kind: Kind::Gauge,
    help: "Failed fetches in a row (0 after a success).",
};
pub const IDP_LAST_SUCCESS: Family = Family {
    name: "canopy_cp_idp_last_success_timestamp_seconds",
    kind: Kind::Gauge,
    help: "Unix time of the last successful fetch of the provider's keys (0: none since this control plane started).",
};
pub const IDP_KEYS: Family = Family {
    name: "canopy_cp_idp_keys",
    kind: Kind::Gauge,
    help: "Keys held (streamed to data planes) for the provider.",
};
pub const IDP_UNKNOWN_KID_FETCHES: Family = Family {
    name: "canopy_cp_idp_unknown_kid_fetches_total",
    kind: Kind::Counter,
    help: "Key fetches started because a data plane met a token with a key id it holds no key for.",
};

/// Every family, for the test that each is served and named once.
#[cfg(test)]
pub const ALL: &[&Family] = &[
    &ADMIN_RPCS,
    &DATA_PLANES_CONNECTED,
    &DATA_PLANES_KNOWN,
    &REVISION,
    &SYNC_STREAMS,
    &SYNC_STREAMS_OPENED,
    &AUDIT_STREAMS,
    &IDP_REFRESH_ATTEMPTS,
    &IDP_REFRESH_FAILURES,
    &IDP_CONSECUTIVE_FAILURES,
    &IDP_LAST_SUCCESS,
    &IDP_KEYS,
    &IDP_UNKNOWN_KID_FETCHES,
];
