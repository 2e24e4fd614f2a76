//! Maintenance windows: recurring times of day in a time zone.

use jiff::Timestamp;
use jiff::civil::{Time, Weekday as CivilWeekday};
use jiff::tz::TimeZone;

use crate::api::policy::{MaintenanceWindow, Weekday};

/// A window that cannot be evaluated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error("unknown time zone {0:?} in a maintenance window")]
    TimeZone(String),
    #[error("invalid time of day {0:?} in a maintenance window (want HH:MM)")]
    TimeOfDay(String),
}

fn weekday(d: Weekday) -> CivilWeekday {
    match d {
        Weekday::Mon => CivilWeekday::Monday,
        Weekday::Tue => CivilWeekday::Tuesday,
        Weekday::Wed => CivilWeekday::Wednesday,
        Weekday::Thu => CivilWeekday::Thursday,
        Weekday::Fri => CivilWeekday::Friday,
        Weekday::Sat => CivilWeekday::Saturday,
        Weekday::Sun => CivilWeekday::Sunday,
    }
}

fn time_of_day(s: &str) -> Result<Time, WindowError> {
    let bad = || WindowError::TimeOfDay(s.to_string());
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m): (i8, i8) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    Time::new(h, m, 0, 0).map_err(|_| bad())
}

/// Check every window can be evaluated (time zone known, times well formed).
pub fn validate(windows: &[MaintenanceWindow]) -> Result<(), WindowError> {
    for w in windows {
        TimeZone::get(&w.time_zone).map_err(|_| WindowError::TimeZone(w.time_zone.clone()))?;
        time_of_day(&w.start)?;
        time_of_day(&w.end)?;
    }
    Ok(())
}

/// Whether new work may start at `now`. No windows: always. A window whose end is before
/// its start crosses midnight and belongs to the day it starts on.
pub fn is_open(windows: &[MaintenanceWindow], now: Timestamp) -> Result<bool, WindowError> {
    if windows.is_empty() {
        return Ok(true);
    }
    for w in windows {
        let tz =
            TimeZone::get(&w.time_zone).map_err(|_| WindowError::TimeZone(w.time_zone.clone()))?;
        let local = now.to_zoned(tz).datetime();
        let (start, end) = (time_of_day(&w.start)?, time_of_day(&w.end)?);
        let t = local.time();
        let day_ok = |d: CivilWeekday| w.days.is_empty() || w.days.iter().any(|x| weekday(*x) == d);
        let open = if start < end {
            day_ok(local.weekday()) && start <= t && t < end
        } else {
            (day_ok(local.weekday()) && t >= start)
                || (day_ok(local.weekday().previous()) && t < end)
        };
        if open {
            return Ok(true);
        }
    }
    Ok(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(days: &[Weekday], start: &str, end: &str, tz: &str) -> MaintenanceWindow {
        MaintenanceWindow {
            days: days.to_vec(),
            start: start.into(),
            end: end.into(),
            time_zone: tz.into(),
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn no_windows_is_always_open() {
        assert!(is_open(&[], at("2026-01-01T12:00:00Z")).unwrap());
    }

    #[test]
    fn simple_window() {
        let ws = [w(&[], "02:00", "06:00", "UTC")];
        assert!(is_open(&ws, at("2026-01-01T02:00:00Z")).unwrap());
        assert!(is_open(&ws, at("2026-01-01T05:59:59Z")).unwrap());
        assert!(!is_open(&ws, at("2026-01-01T06:00:00Z")).unwrap());
        assert!(!is_open(&ws, at("2026-01-01T01:59:00Z")).unwrap());
    }

    #[test]
    fn days_and_time_zones() {
        // 2026-01-05 is a Monday. 02:00–06:00 Berlin (UTC+1 in winter) on Mondays.
        let ws = [w(&[Weekday::Mon], "02:00", "06:00", "Europe/Berlin")];
        assert!(is_open(&ws, at("2026-01-05T01:30:00Z")).unwrap());
        assert!(!is_open(&ws, at("2026-01-05T05:30:00Z")).unwrap());
        assert!(!is_open(&ws, at("2026-01-06T01:30:00Z")).unwrap());
    }

    #[test]
    fn windows_crossing_midnight_belong_to_their_start_day() {
        let ws = [w(&[Weekday::Fri], "22:00", "04:00", "UTC")];
        // 2026-01-09 is a Friday.
        assert!(is_open(&ws, at("2026-01-09T23:00:00Z")).unwrap());
        assert!(is_open(&ws, at("2026-01-10T03:00:00Z")).unwrap());
        assert!(!is_open(&ws, at("2026-01-10T23:00:00Z")).unwrap());
        assert!(!is_open(&ws, at("2026-01-09T03:00:00Z")).unwrap());
    }

    #[test]
    fn bad_windows_are_errors() {
        assert_eq!(
            validate(&[w(&[], "02:00", "06:00", "Mars/Olympus")]),
            Err(WindowError::TimeZone("Mars/Olympus".into()))
        );
        assert!(validate(&[w(&[], "25:00", "06:00", "UTC")]).is_err());
        assert!(validate(&[w(&[], "02:00", "06:00", "UTC")]).is_ok());
    }
}
