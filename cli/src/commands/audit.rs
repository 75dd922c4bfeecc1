//! `audit list`, `audit tail`, `audit export`: the audit trail (admins only).

mod fields;
mod when;

use std::io::Write;
use std::time::{Duration, SystemTime};

use canopy_proto::v1 as pb;

use crate::args::{
    AuditExportArgs, AuditFilterArgs, AuditKind, AuditListArgs, AuditOutcome, AuditTailArgs, Format,
};
use crate::commands::Ctx;
use crate::error::CliError;
use crate::output::{print, table, warn};

/// Events per page the control plane is asked for (its maximum).
const PAGE: u32 = 10_000;
/// A page of a large window may scan a long way: more than the default deadline.
const PAGE_DEADLINE: Duration = Duration::from_secs(300);
/// The marker reason of a tail that lost events (see the control plane's Audit service).
const TAIL_LAGGED: &str = "tail-lagged";

fn filter(f: AuditFilterArgs) -> pb::AuditFilter {
    pb::AuditFilter {
        client: f.client.unwrap_or_default(),
        subject: f.subject.unwrap_or_default(),
        idp: f.idp.unwrap_or_default(),
        server: f.server.unwrap_or_default(),
        tool: f.tool.unwrap_or_default(),
        outcome: f
            .outcome
            .map(|o| match o {
                AuditOutcome::Ok => "ok",
                AuditOutcome::Error => "error",
                AuditOutcome::Denied => "denied",
                AuditOutcome::Limited => "limited",
            })
            .unwrap_or_default()
            .to_owned(),
        kinds: f
            .kinds
            .iter()
            .map(|k| {
                match k {
                    AuditKind::Request => "request",
                    AuditKind::Change => "change",
                    AuditKind::AuthFailure => "auth-failure",
                    AuditKind::Gap => "gap",
                }
                .to_owned()
            })
            .collect(),
        data_plane: f.data_plane.unwrap_or_default(),
        method: f.method.unwrap_or_default(),
    }
}

/// The window as Unix nanoseconds (until 0 = now and later).
fn window(since: &str, until: Option<&str>) -> Result<(i64, i64), CliError> {
    let now = SystemTime::now();
    let since = when::parse("--since", since, now)?;
    let until = until
        .map(|u| when::parse("--until", u, now))
        .transpose()?
        .unwrap_or(0);
    if until != 0 && since >= until {
        return Err(CliError::usage("--since must be before --until"));
    }
    Ok((since, until))
}

pub async fn list(ctx: &Ctx, args: AuditListArgs) -> Result<(), CliError> {
    if args.limit == 0 {
        return Err(CliError::usage("--limit must be at least 1"));
    }
    let (since, until) = window(&args.window.since, args.window.until.as_deref())?;
    let filter = filter(args.filter);
    let mut a = ctx.admin()?;
    let mut events = Vec::new();
    let mut cursor = String::new();
    loop {
        let want = (args.limit as usize - events.len()).min(PAGE as usize) as u32;
        let req = pb::ListAuditEventsRequest {
            filter: Some(filter.clone()),
            since_unix_nanos: since,
            until_unix_nanos: until,
            limit: want,
            cursor: std::mem::take(&mut cursor),
        };
        let page =
            a.at.call_within(PAGE_DEADLINE, a.audit.list_audit_events(req))
                .await?;
        events.extend(page.events);
        if page.next_cursor.is_empty() || events.len() >= args.limit as usize {
            break;
        }
        cursor = page.next_cursor;
    }
    let json: Vec<serde_json::Value> = events.iter().map(fields::to_json).collect();
    ctx.emit(&json, || {
        let rows: Vec<Vec<String>> = events.iter().map(fields::row).collect();
        table(
            &fields::HEADERS,
            &rows,
            "No audit events in the window (widen it with --since, or drop a filter).",
        )
    })
}

pub async fn tail(ctx: &Ctx, args: AuditTailArgs) -> Result<(), CliError> {
    let mut a = ctx.admin()?;
    let req = pb::TailAuditEventsRequest {
        filter: Some(filter(args.filter)),
        backlog: args.backlog,
    };
    let mut stream = a.at.call(a.audit.tail_audit_events(req)).await?;
    if ctx.format == Format::Text {
        print(&fields::HEADERS.join("  "));
    }
    loop {
        let event = match stream.message().await {
            Ok(Some(e)) => e,
            Ok(None) => return Ok(()),
            Err(status) => {
                return Err(CliError::Rpc {
                    status,
                    registry: a.at.registry.clone(),
                })
            }
        };
        if let Some(pb::audit_event::Kind::Gap(g)) = &event.kind {
            if g.reason == TAIL_LAGGED && ctx.format == Format::Text {
                warn(&format!(
                    "... {} events skipped: this tail read too slowly (see `canopy audit list`)",
                    g.dropped
                ));
                continue;
            }
        }
        match ctx.format {
            Format::Json => print(&fields::to_json(&event).to_string()),
            Format::Text => print(&fields::row(&event).join("  ")),
        }
    }
}

pub async fn export(ctx: &Ctx, args: AuditExportArgs) -> Result<(), CliError> {
    let (since, until) = window(&args.since, args.until.as_deref())?;
    let filter = filter(args.filter);
    let mut a = ctx.admin()?;
    let mut cursor = String::new();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    loop {
        let req = pb::ListAuditEventsRequest {
            filter: Some(filter.clone()),
            since_unix_nanos: since,
            until_unix_nanos: until,
            limit: PAGE,
            cursor: std::mem::take(&mut cursor),
        };
        let page =
            a.at.call_within(PAGE_DEADLINE, a.audit.list_audit_events(req))
                .await?;
        for event in &page.events {
            // A closed pipe (`| head`) ends the export quietly.
            if writeln!(out, "{}", fields::to_json(event)).is_err() {
                return Ok(());
            }
        }
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    let _ = out.flush();
    Ok(())
}
