//! Daylight-saving transitions, 2026 through 2030: the ticks of every schedule in the
//! shipped workflows (and of representative fixed-time and interval expressions) in their
//! own zone, Europe/Berlin, America/New_York and Australia/Lord_Howe (which shifts by 30
//! minutes) must be exactly the ticks of the rule in docs/schedules.md.
//!
//! The rule is computed here independently of croner: for every local date, every wall
//! time the fields name is resolved in the zone; an interval fires at every instant that
//! wall time has (none in a gap, two in a fold), a fixed-time expression at its single
//! instant, the earlier one in a fold, and the first instant after a gap.

use chrono::{
    DateTime, Datelike as _, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone as _, Utc,
};
use chrono_tz::Tz;
use runway::cadence::Cadence;

const ZONES: [&str; 3] = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe"];

/// One cron field as a set of allowed values: `*`, `*/n`, `a`, `a-b`, `a-b/n`, lists.
fn field(text: &str, lo: u32, hi: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, s.parse::<u32>().unwrap()),
            None => (part, 1),
        };
        let (a, b) = match range {
            "*" => (lo, hi),
            r => match r.split_once('-') {
                Some((a, b)) => (a.parse().unwrap(), b.parse().unwrap()),
                None => {
                    let v = r.parse().unwrap();
                    (v, v)
                }
            },
        };
        out.extend((a..=b).step_by(step as usize));
    }
    out
}

struct Pattern {
    seconds: Vec<u32>,
    minutes: Vec<u32>,
    hours: Vec<u32>,
    days: Vec<u32>,
    months: Vec<u32>,
    weekdays: Vec<u32>,
    fixed: bool,
    dom_any: bool,
    dow_any: bool,
}

fn pattern(expr: &str) -> Pattern {
    let mut parts: Vec<&str> = expr.split_whitespace().collect();
    if parts.len() == 5 {
        parts.insert(0, "0");
    }
    let plain = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    Pattern {
        seconds: field(parts[0], 0, 59),
        minutes: field(parts[1], 0, 59),
        hours: field(parts[2], 0, 23),
        days: field(parts[3], 1, 31),
        months: field(parts[4], 1, 12),
        weekdays: field(parts[5], 0, 7).into_iter().map(|d| d % 7).collect(),
        fixed: plain(parts[0]) && plain(parts[1]) && plain(parts[2]),
        dom_any: parts[3] == "*",
        dow_any: parts[5] == "*",
    }
}

impl Pattern {
    fn date_matches(&self, d: NaiveDate) -> bool {
        if !self.months.contains(&d.month()) {
            return false;
        }
        let dom = self.days.contains(&d.day());
        let dow = self.weekdays.contains(&d.weekday().num_days_from_sunday());
        match (self.dom_any, self.dow_any) {
            (true, true) => true,
            (false, true) => dom,
            (true, false) => dow,
            // Vixie cron: both restricted means either.
            (false, false) => dom || dow,
        }
    }
}

/// The first instant whose wall clock is at or after `wall` (the end of a gap).
fn after_gap(zone: Tz, wall: NaiveDateTime) -> DateTime<Utc> {
    let mut t = wall;
    loop {
        t += Duration::seconds(1);
        match zone.from_local_datetime(&t) {
            LocalResult::Single(x) => return x.with_timezone(&Utc),
            LocalResult::Ambiguous(x, _) => return x.with_timezone(&Utc),
            LocalResult::None => {}
        }
    }
}

/// Every tick in [from, to) by the documented rule.
fn oracle(expr: &str, zone: Tz, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let p = pattern(expr);
    let mut out = Vec::new();
    let mut day = from.with_timezone(&zone).date_naive() - Duration::days(1);
    let last = to.with_timezone(&zone).date_naive() + Duration::days(1);
    while day <= last {
        if p.date_matches(day) {
            for &h in &p.hours {
                for &m in &p.minutes {
                    for &s in &p.seconds {
                        let wall = day.and_hms_opt(h, m, s).unwrap();
                        match zone.from_local_datetime(&wall) {
                            LocalResult::Single(t) => out.push(t.with_timezone(&Utc)),
                            LocalResult::Ambiguous(a, b) => {
                                out.push(a.with_timezone(&Utc));
                                if !p.fixed {
                                    out.push(b.with_timezone(&Utc));
                                }
                            }
                            LocalResult::None if p.fixed => out.push(after_gap(zone, wall)),
                            LocalResult::None => {}
                        }
                    }
                }
            }
        }
        day += Duration::days(1);
    }
    out.sort();
    out.dedup();
    out.retain(|t| *t >= from && *t < to);
    out
}

fn cadence_ticks(c: &Cadence, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut out = Vec::new();
    let mut t = c.first_at_or_after(from);
    while let Some(tick) = t.filter(|t| *t < to) {
        out.push(tick);
        t = c.next_after(tick);
    }
    out
}

/// The first place two tick lists differ, for the failure message.
fn first_difference(a: &[DateTime<Utc>], b: &[DateTime<Utc>]) -> String {
    let i = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .unwrap_or(a.len().min(b.len()));
    format!(
        "scheduler {:?} vs rule {:?} at index {i} (lengths {} and {})",
        a.get(i),
        b.get(i),
        a.len(),
        b.len()
    )
}

fn check(expr: &str, zone_name: &str) {
    let zone: Tz = zone_name.parse().unwrap();
    let from = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let to = Utc.with_ymd_and_hms(2031, 1, 1, 0, 0, 0).unwrap();
    let cadence = Cadence::parse(expr, zone_name).unwrap();
    assert_eq!(
        cadence.is_fixed_time(),
        pattern(expr).fixed,
        "`{expr}`: fixed-time as documented"
    );
    let got = cadence_ticks(&cadence, from, to);
    let want = oracle(expr, zone, from, to);
    assert!(
        got == want,
        "`{expr}` in {zone_name}: {}",
        first_difference(&got, &want)
    );
    // Going back from each tick finds the one before: what catch-up ranges rely on.
    for pair in got.windows(2).step_by(97) {
        assert_eq!(
            cadence.last_before(pair[1]),
            Some(pair[0]),
            "`{expr}` in {zone_name}"
        );
    }
}

/// Every `(cron, timezone)` the shipped workflows declare.
fn shipped() -> Vec<(String, String)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows");
    let mut out = Vec::new();
    for file in runway::library::expand(&dir).unwrap() {
        let source = runway::library::read(&file).unwrap().unwrap();
        let compiled = runway::compiler::compile_all(
            vec![source],
            &runway::library::references_in(&dir, std::slice::from_ref(&file)),
        )
        .pop()
        .unwrap();
        let plan = compiled.plan.expect("shipped workflows compile");
        for s in &plan.playbook.schedules {
            out.push((s.cron.value.clone(), s.timezone.value.clone()));
        }
    }
    assert!(!out.is_empty(), "the shipped workflows declare schedules");
    out
}

#[test]
fn every_shipped_schedule_follows_the_rule_in_every_zone() {
    for (expr, own) in shipped() {
        let mut zones: Vec<&str> = ZONES.to_vec();
        if !zones.contains(&own.as_str()) {
            zones.push(&own);
        }
        // Two at a time: the machines this runs on have two cores.
        for pair in zones.chunks(2) {
            std::thread::scope(|scope| {
                for zone in pair {
                    let expr = &expr;
                    scope.spawn(move || check(expr, zone));
                }
            });
        }
    }
}

#[test]
fn fixed_time_and_interval_expressions_follow_the_rule_in_every_zone() {
    // 02:30 and 02:15 fall in Berlin's and New York's gap and fold, 02:15 in Lord Howe's
    // half-hour gap, 01:45 in its half-hour fold; hourly and weekday ones are intervals.
    for expr in [
        "30 2 * * *",
        "15 2 * * *",
        "45 1 * * *",
        "0 * * * *",
        "0 9 * * 1-5",
        "0 30 2 * * *",
        "*/20 1-3 * * 0",
    ] {
        for zone in ZONES {
            check(expr, zone);
        }
    }
}
