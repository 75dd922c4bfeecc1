//! `list data-planes`: the fleet as the control plane sees it.

use canopy_proto::v1 as pb;
use serde::Serialize;

use crate::commands::Ctx;
use crate::error::CliError;
use crate::output::{now_ms, relative_time, table};

/// `list data-planes` JSON: one object per data plane.
#[derive(Debug, Serialize)]
pub struct DataPlaneJson {
    pub id: String,
    pub address: String,
    pub applied_revision: u64,
    /// Revisions behind the control plane.
    pub lag: u64,
    /// Unix milliseconds; 0 = never.
    pub last_seen_ms: u64,
    pub connected: bool,
}

impl From<pb::DataPlaneInfo> for DataPlaneJson {
    fn from(d: pb::DataPlaneInfo) -> Self {
        Self {
            id: d.node_id,
            address: d.address,
            applied_revision: d.applied_revision,
            lag: d.lag,
            last_seen_ms: d.last_seen_ms,
            connected: d.connected,
        }
    }
}

pub async fn list(ctx: &Ctx) -> Result<(), CliError> {
    let mut a = ctx.admin()?;
    let resp =
        a.at.call(a.rpc.list_data_planes(pb::ListDataPlanesRequest {}))
            .await?;
    let planes: Vec<DataPlaneJson> = resp
        .data_planes
        .into_iter()
        .map(DataPlaneJson::from)
        .collect();
    ctx.emit(&planes, || render(&planes, resp.revision, now_ms()))
}

fn render(planes: &[DataPlaneJson], revision: u64, now: u64) -> String {
    let rows: Vec<Vec<String>> = planes
        .iter()
        .map(|d| {
            vec![
                d.id.clone(),
                d.address.clone(),
                d.applied_revision.to_string(),
                d.lag.to_string(),
                relative_time(now, d.last_seen_ms),
                if d.connected {
                    "yes".into()
                } else {
                    "no".into()
                },
            ]
        })
        .collect();
    let body = table(
        &["ID", "ADDRESS", "REVISION", "LAG", "LAST SEEN", "CONNECTED"],
        &rows,
        "No data planes have connected to this control plane.\n",
    );
    format!("{body}control plane revision: {revision}")
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // tests: a panic is the failure report
mod tests {
    use super::*;

    #[test]
    fn renders_rows_and_json_names() {
        let d = DataPlaneJson::from(pb::DataPlaneInfo {
            node_id: "dp-1".into(),
            address: "10.0.0.5:8080".into(),
            applied_revision: 40,
            lag: 2,
            last_seen_ms: 1_000_000 - 3_000,
            connected: true,
        });
        let text = render(std::slice::from_ref(&d), 42, 1_000_000);
        assert!(
            text.contains("dp-1") && text.contains("3s ago") && text.contains("yes"),
            "{text}"
        );
        assert!(text.ends_with("control plane revision: 42"));
        let v = serde_json::to_value(&d).unwrap();
        assert_eq!(v["id"], "dp-1");
        assert_eq!(v["applied_revision"], 40);
    }
}
