//! Schedulers killed and stopped at random never fire a tick twice or lose one: the reduced
//! version of `cargo bench --bench scheduler` (docs/RELIABILITY.md). Real `runway
//! scheduler` processes, a simulated clock, SIGKILL and SIGSTOP of the busiest one.

#[path = "common/chaos.rs"]
mod chaos;
#[path = "common/db.rs"]
mod db;

use std::time::Duration;

use chaos::{Setup, create_db, drop_db, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_postgres_schedulers_under_kills_and_stops_fire_every_tick_once() {
    let server = db::postgres_server();
    let name = format!("runway_chaos_{}", std::process::id());
    let url = create_db(&server, &name).await.expect("a database");
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        url,
        processes: 3,
        schedules: 6,
        minutes: 100,
        rate: 500.0,
        kill: true,
        stop: true,
        every: (Duration::from_millis(700), Duration::from_millis(1500)),
        seed: 0x5eed_0001,
        dir: dir.path().to_owned(),
    };
    let report = run(&setup).await;
    drop_db(&server, &name).await.expect("drop");
    let report = report.expect("the chaos run");
    report.print("three Postgres schedulers");
    assert_eq!(report.expected, 600);
    assert_eq!(report.duplicates, 0, "duplicate fires");
    assert_eq!(report.missed, 0, "ticks missed inside the window");
    assert_eq!(report.other_outcomes, 0);
    assert_eq!(report.runs, 600);
    assert_eq!(report.started, 600);
    assert!(report.kills >= 1 && report.stops >= 1, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_sqlite_schedulers_under_kills_never_fire_a_tick_twice() {
    let dir = tempfile::tempdir().unwrap();
    let setup = Setup {
        url: format!("sqlite://{}", dir.path().join("runway.db").display()),
        processes: 2,
        schedules: 4,
        minutes: 60,
        rate: 600.0,
        kill: true,
        stop: false,
        every: (Duration::from_millis(500), Duration::from_millis(1200)),
        seed: 0x5eed_0002,
        dir: dir.path().to_owned(),
    };
    let report = run(&setup).await.expect("the chaos run");
    report.print("two SQLite schedulers");
    assert_eq!(report.duplicates, 0, "duplicate fires");
    assert_eq!(report.missed, 0, "ticks missed inside the window");
    assert_eq!(report.runs, 240);
    assert!(report.kills >= 1, "{report:?}");
}
