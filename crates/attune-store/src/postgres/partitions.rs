//! Monthly event partitions: which month holds a time, partition names, the list of partitions.

use super::*;

pub(super) const LIST_PARTITIONS_SQL: &str = "\
SELECT child.relname::text FROM pg_inherits
JOIN pg_class child ON child.oid = pg_inherits.inhrelid
JOIN pg_class parent ON parent.oid = pg_inherits.inhparent
WHERE parent.relname = 'events'
  AND parent.relnamespace = (SELECT oid FROM pg_namespace WHERE nspname = current_schema())";

// ---------------------------------------------------------------------------------------------
// Months and partition names.

/// The monthly partition that holds `ts_ms`, or `None` for `events_default`.
pub(super) fn monthly_partition_of(ts_ms: i64) -> Option<i64> {
    let (year, month, _) = civil_from_days(ts_ms.div_euclid(86_400_000));
    let month_idx = (year - 1970) * 12 + (month - 1);
    (FIRST_MONTH..END_MONTH).contains(&month_idx).then_some(month_idx)
}

/// The first millisecond of month `month_idx` (0 = January 1970), UTC.
pub(super) fn month_start_ms(month_idx: i64) -> i64 {
    let year = 1970 + month_idx.div_euclid(12);
    let month = month_idx.rem_euclid(12) + 1;
    days_from_civil(year, month, 1) * 86_400_000
}

pub(super) fn partition_name(month_idx: i64) -> String {
    format!("events_y{:04}m{:02}", 1970 + month_idx.div_euclid(12), month_idx.rem_euclid(12) + 1)
}

pub(super) fn month_of_partition(name: &str) -> Option<i64> {
    let rest = name.strip_prefix("events_y")?;
    let (year, month) = rest.split_once('m')?;
    let (year, month): (i64, i64) = (year.parse().ok()?, month.parse().ok()?);
    if !(1..=12).contains(&month) {
        return None;
    }
    let month_idx = (year - 1970) * 12 + month - 1;
    (partition_name(month_idx) == name).then_some(month_idx)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's `days_from_civil`).
pub(super) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The date of a day since 1970-01-01 (Howard Hinnant's `civil_from_days`).
pub(super) fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}
