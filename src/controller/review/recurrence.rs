//! Recurring campaigns, decided without a server: when a campaign's next period comes, what
//! the next campaign is called and what its spec is.
//!
//! A campaign with `spec.recurrence` creates exactly one successor, at its `startAt` + one
//! period, whatever its own phase (auditors expect the cadence, not "after the last one
//! closed"). The successor carries the same recurrence, so the series continues one campaign
//! at a time. A period whose `dueAt` has already passed when its start is noticed (the
//! operator was not running) is skipped: a campaign nobody can decide would only remediate
//! its unanswered items.
//!
//! The name is deterministic (the series' name and the period's start), so a crash between
//! the create and the status write, or a second replica, finds the same name taken and
//! creates nothing more.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::crd::AccessReviewSpec;

/// The label holding a series' name, on every campaign after the first.
pub const SERIES_LABEL: &str = "oktaciam.io/review-series";

/// The label on a successor holding the uid of the campaign that created it.
pub const PREVIOUS_UID_LABEL: &str = "oktaciam.io/previous-review-uid";

/// Longest object name a successor gets (a DNS label's limit, so it also fits in labels).
const MAX_NAME: usize = 63;

/// What to do about a recurring campaign's successor now.
#[derive(Debug, Clone, PartialEq)]
pub enum Next {
    /// Nothing before this instant, the start of the next period to create.
    WaitUntil(Timestamp),
    /// Create the successor with this spec now.
    Create {
        /// Its `startAt`.
        start_at: Timestamp,
        /// The series' period.
        period: SignedDuration,
        /// Its spec: this campaign's, with `startAt` and `dueAt` shifted.
        spec: Box<AccessReviewSpec>,
    },
}

/// Parses a period in the syntax `crd::review::PERIOD_PATTERN` allows (`91d`, `1d12h`,
/// `30s`); a day is 24 hours.
pub fn parse_period(text: &str) -> Result<SignedDuration, String> {
    let invalid = || format!("every: {text:?} is not a period such as 91d, 12h or 1d12h");
    let mut total = SignedDuration::ZERO;
    let mut digits = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: i64 = match c {
            'd' => 86_400,
            'h' => 3_600,
            'm' => 60,
            's' => 1,
            _ => return Err(invalid()),
        };
        let amount: i64 = digits.parse().map_err(|_| invalid())?;
        digits.clear();
        let secs = amount.checked_mul(unit).ok_or_else(invalid)?;
        total = total
            .checked_add(SignedDuration::from_secs(secs))
            .ok_or_else(invalid)?;
    }
    if !digits.is_empty() || total.is_zero() {
        return Err(invalid());
    }
    Ok(total)
}

/// When the campaign's successor is due, and its spec: `Err` says why the recurrence is
/// invalid (no `startAt`, a period shorter than the campaign).
pub fn next(spec: &AccessReviewSpec, now: Timestamp) -> Result<Option<Next>, String> {
    let Some(recurrence) = &spec.recurrence else {
        return Ok(None);
    };
    let period = parse_period(&recurrence.every)?;
    let Some(start) = spec.start_at.as_ref().map(|t| t.0) else {
        return Err("a recurring campaign needs startAt, the start of its first period".into());
    };
    let due = spec.due_at.0;
    let length = start.duration_until(due);
    if period < length {
        return Err(format!(
            "every: {} is shorter than the campaign (dueAt - startAt = {length:#}), so \
             campaigns of the series would overlap",
            recurrence.every
        ));
    }
    let shifted = |t: Timestamp, periods: i64| {
        period
            .checked_mul(i32::try_from(periods).ok()?)
            .and_then(|d| t.checked_add(d).ok())
    };
    let out_of_range = || format!("every: {} reaches past the year 9999", recurrence.every);
    let elapsed = start.duration_until(now).as_nanos();
    // Whole periods since startAt: the latest period that has started.
    let periods = i64::try_from(elapsed.max(0) / period.as_nanos()).map_err(|_| out_of_range())?;
    if periods == 0 {
        return Ok(Some(Next::WaitUntil(
            shifted(start, 1).ok_or_else(out_of_range)?,
        )));
    }
    let (start_at, due_at) = (
        shifted(start, periods).ok_or_else(out_of_range)?,
        shifted(due, periods).ok_or_else(out_of_range)?,
    );
    if due_at <= now {
        // Missed while nobody ran: wait for the next period rather than open a closed one.
        return Ok(Some(Next::WaitUntil(
            shifted(start, periods + 1).ok_or_else(out_of_range)?,
        )));
    }
    let mut successor = spec.clone();
    successor.start_at = Some(Time(start_at));
    successor.due_at = Time(due_at);
    Ok(Some(Next::Create {
        start_at,
        period,
        spec: Box::new(successor),
    }))
}

/// The series a campaign belongs to: its `SERIES_LABEL`, or (the first campaign) its own
/// name, shortened so that a successor's name stays within 63 characters.
pub fn series(name: &str, label: Option<&str>) -> String {
    label.map_or_else(
        || fit(name, MAX_NAME - "-yyyymmdd-hhmmss".len()),
        str::to_owned,
    )
}

/// The successor's name: `<series>-<yyyymmdd>` of its start (UTC), with `-<hhmmss>` added
/// when the period is not whole days (two starts may fall on one day).
pub fn successor_name(series: &str, start_at: Timestamp, period: SignedDuration) -> String {
    let whole_days = period.as_secs() % 86_400 == 0 && period.subsec_nanos() == 0;
    let suffix = if whole_days {
        start_at.strftime("%Y%m%d").to_string()
    } else {
        start_at.strftime("%Y%m%d-%H%M%S").to_string()
    };
    format!("{}-{suffix}", fit(series, MAX_NAME - 1 - suffix.len()))
}

/// `name` cut to `max` bytes without a trailing `-` or `.` (names and label values must end
/// alphanumeric). Object names are ASCII.
fn fit(name: &str, max: usize) -> String {
    let cut = &name[..name.len().min(max)];
    cut.trim_end_matches(['-', '.']).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::Recurrence;

    fn spec(start: &str, due: &str, every: Option<&str>) -> AccessReviewSpec {
        let mut spec: AccessReviewSpec = serde_json::from_value(serde_json::json!({
            "connectorRef": {"name": "acme"},
            "reviewers": {"users": ["carol@example.com"]},
            "startAt": start,
            "dueAt": due,
        }))
        .unwrap();
        spec.recurrence = every.map(|every| Recurrence {
            every: every.into(),
        });
        spec
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn periods_are_days_hours_minutes_and_seconds() {
        assert_eq!(
            parse_period("91d").unwrap(),
            SignedDuration::from_hours(91 * 24)
        );
        assert_eq!(
            parse_period("1d12h").unwrap(),
            SignedDuration::from_hours(36)
        );
        assert_eq!(
            parse_period("2m30s").unwrap(),
            SignedDuration::from_secs(150)
        );
        for bad in ["", "0d", "d", "12", "1w", "1.5d", "99999999999999999999d"] {
            assert!(parse_period(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_campaign_without_recurrence_has_no_successor() {
        let s = spec("2027-01-01T00:00:00Z", "2027-01-15T00:00:00Z", None);
        assert_eq!(next(&s, at("2028-01-01T00:00:00Z")), Ok(None));
    }

    #[test]
    fn the_successor_waits_for_the_next_period() {
        let s = spec("2027-01-01T00:00:00Z", "2027-01-15T00:00:00Z", Some("91d"));
        assert_eq!(
            next(&s, at("2027-03-01T00:00:00Z")),
            Ok(Some(Next::WaitUntil(at("2027-04-02T00:00:00Z"))))
        );
    }

    #[test]
    fn at_the_next_period_the_successor_is_the_same_campaign_one_period_later() {
        let s = spec("2027-01-01T00:00:00Z", "2027-01-15T00:00:00Z", Some("91d"));
        let Ok(Some(Next::Create {
            start_at,
            spec: got,
            ..
        })) = next(&s, at("2027-04-02T00:00:00Z"))
        else {
            panic!("expected a successor");
        };
        assert_eq!(start_at, at("2027-04-02T00:00:00Z"));
        let mut want = s.clone();
        want.start_at = Some(Time(at("2027-04-02T00:00:00Z")));
        want.due_at = Time(at("2027-04-16T00:00:00Z"));
        assert_eq!(*got, want);
    }

    #[test]
    fn a_period_noticed_late_but_still_open_is_created_and_a_closed_one_skipped() {
        let s = spec("2027-01-01T00:00:00Z", "2027-01-15T00:00:00Z", Some("91d"));
        // Two periods later, still before that period's due time: that period.
        let Ok(Some(Next::Create {
            start_at,
            spec: got,
            ..
        })) = next(&s, at("2027-07-10T00:00:00Z"))
        else {
            panic!("expected a successor");
        };
        assert_eq!(start_at, at("2027-07-02T00:00:00Z"));
        assert_eq!(got.due_at.0, at("2027-07-16T00:00:00Z"));
        // After that period's due time: nothing until the following period.
        assert_eq!(
            next(&s, at("2027-07-20T00:00:00Z")),
            Ok(Some(Next::WaitUntil(at("2027-10-01T00:00:00Z"))))
        );
    }

    #[test]
    fn a_period_shorter_than_the_campaign_or_no_start_is_invalid() {
        let s = spec("2027-01-01T00:00:00Z", "2027-01-15T00:00:00Z", Some("7d"));
        let why = next(&s, at("2027-01-02T00:00:00Z")).unwrap_err();
        assert!(why.contains("shorter than the campaign"), "{why}");
        let mut s = spec("2027-01-01T00:00:00Z", "2027-01-15T00:00:00Z", Some("91d"));
        s.start_at = None;
        assert!(
            next(&s, at("2027-01-02T00:00:00Z"))
                .unwrap_err()
                .contains("startAt")
        );
    }

    #[test]
    fn names_are_the_series_and_the_start_within_63_characters() {
        let start = at("2027-04-02T10:20:30Z");
        assert_eq!(
            successor_name("uar", start, SignedDuration::from_hours(91 * 24)),
            "uar-20270402"
        );
        assert_eq!(
            successor_name("uar", start, SignedDuration::from_secs(30)),
            "uar-20270402-102030"
        );
        let long = format!("{}-x", "a".repeat(46));
        let first = series(&long, None);
        assert_eq!(first, "a".repeat(46), "cut without a trailing dash");
        let name = successor_name(&first, start, SignedDuration::from_secs(30));
        assert!(name.len() <= 63, "{name}");
        assert_eq!(series("ignored", Some("uar")), "uar");
    }
}
