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
pub const AUDIT_INGESTED: Family = Family {
    name: "canopy_cp_audit_events_ingested_total",
    kind: Kind::Counter,
    help: "Audit events stored durably since start (data planes' and the control plane's own; duplicates not counted).",
};
pub const AUDIT_DUPLICATES: Family = Family {
    name: "canopy_cp_audit_duplicates_total",
    kind: Kind::Counter,
    help: "Audit events received again (a retried batch) and not stored twice.",
};
pub const AUDIT_STORED_BYTES: Family = Family {
    name: "canopy_cp_audit_stored_bytes",
    kind: Kind::Gauge,
    help: "Bytes of audit events stored as --audit-max-bytes counts them (events, keys, indexes; sled's files are larger until it reclaims space).",
};
pub const AUDIT_RETENTION_DELETED: Family = Family {
    name: "canopy_cp_audit_retention_deleted_total",
    kind: Kind::Counter,
    help: "Audit events removed by --audit-retention or --audit-max-bytes since start.",
};
pub const AUDIT_WRITER_QUEUE: Family = Family {
    name: "canopy_cp_audit_writer_queue",
    kind: Kind::Gauge,
    help: "Batches waiting for the audit writer now (at its bound of 256, Ship streams wait: acks slow down).",
};
pub const AUDIT_COMMITS: Family = Family {
    name: "canopy_cp_audit_commits_total",
    kind: Kind::Counter,
    help: "Durable commits (flushes) of the audit writer.",
};
pub const AUDIT_ROUNDS: Family = Family {
    name: "canopy_cp_audit_write_rounds_total",
    kind: Kind::Counter,
    help: "Write rounds of the audit writer (the batches queued at its turn, written together).",
};
pub const AUDIT_ROUND_SECONDS: Family = Family {
    name: "canopy_cp_audit_write_round_seconds_total",
    kind: Kind::Counter,
    help: "Seconds from a write round's start to its durable flush, summed over the rounds (divided by the rounds: the mean time a batch waits for its ack once the writer takes it).",
};
pub const AUDIT_TAIL_LAGGED: Family = Family {
    name: "canopy_cp_audit_tail_lagged_total",
    kind: Kind::Counter,
    help: "Live events `canopy audit tail` followers missed because they read too slowly (each told by a tail-lagged marker).",
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
    &AUDIT_INGESTED,
    &AUDIT_DUPLICATES,
    &AUDIT_STORED_BYTES,
    &AUDIT_RETENTION_DELETED,
    &AUDIT_WRITER_QUEUE,
    &AUDIT_COMMITS,
    &AUDIT_ROUNDS,
    &AUDIT_ROUND_SECONDS,
    &AUDIT_TAIL_LAGGED,
    &IDP_REFRESH_ATTEMPTS,
    &IDP_REFRESH_FAILURES,
    &IDP_CONSECUTIVE_FAILURES,
    &IDP_LAST_SUCCESS,
    &IDP_KEYS,
    &IDP_UNKNOWN_KID_FETCHES,
];
