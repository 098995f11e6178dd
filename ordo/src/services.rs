//! `ordo services`: the service registry that ClickHouse keeps from the logs, as a table on
//! stdout.

use crate::cli::{GlobalArgs, ServicesArgs};
use anyhow::Context;
use chrono::SecondsFormat;

pub async fn list(global: &GlobalArgs, args: &ServicesArgs) -> anyhow::Result<()> {
    let clickhouse = global.clickhouse_config()?;
    let services = ordo_clickhouse_store::active_services(
        &clickhouse,
        global.service_retire_days,
        args.tenant.as_deref(),
    )
    .await
    .context("cannot read the service registry (is ClickHouse up and migrated?)")?;
    println!(
        "{:<16} {:<24} {:<10} {:<16} {:<20} {:<20} {:>10} {:>8} {:>12} {:>12}",
        "TENANT",
        "SERVICE",
        "ENV",
        "COMPONENT",
        "FIRST SEEN",
        "LAST SEEN",
        "LINES 24H",
        "ERRORS",
        "DELAY AVG MS",
        "DELAY MAX MS"
    );
    let time = |at: chrono::DateTime<chrono::Utc>| at.to_rfc3339_opts(SecondsFormat::Secs, true);
    for s in &services {
        println!(
            "{:<16} {:<24} {:<10} {:<16} {:<20} {:<20} {:>10} {:>8} {:>12.0} {:>12}",
            s.tenant,
            s.service,
            s.env,
            s.component,
            time(s.first_seen),
            time(s.last_seen),
            s.lines_24h,
            s.errors_24h,
            s.delay_ms_avg_24h,
            s.delay_ms_max_24h
        );
    }
    eprintln!(
        "{} services seen within the last {} days",
        services.len(),
        global.service_retire_days
    );
    Ok(())
}
