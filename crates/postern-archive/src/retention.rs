//! Retention: a `RetentionPeriod` and the current time to the instant
//! before which messages are deleted.

use postern_model::RetentionPeriod;
use time::{Date, Month, OffsetDateTime};

/// The period in calendar months; `None` for `PERMANENT`.
pub fn months(period: RetentionPeriod) -> Option<u32> {
    use RetentionPeriod as P;
    Some(match period {
        P::ThreeMonths => 3,
        P::SixMonths => 6,
        P::NineMonths => 9,
        P::OneYear => 12,
        P::EighteenMonths => 18,
        P::TwoYears => 24,
        P::ThirtyMonths => 30,
        P::ThreeYears => 36,
        P::FourYears => 48,
        P::FiveYears => 60,
        P::SixYears => 72,
        P::SevenYears => 84,
        P::EightYears => 96,
        P::NineYears => 108,
        P::TenYears => 120,
        P::Permanent => return None,
    })
}

/// `now` minus the period in calendar months, at the same time of day and
/// offset, the day clamped to the last day of the target month (31 May
/// minus 3 months is 28 or 29 February). Messages received strictly before
/// it are expired. `None` for `PERMANENT`.
pub fn cutoff(period: RetentionPeriod, now: OffsetDateTime) -> Option<OffsetDateTime> {
    let months = months(period)? as i32;
    let index = now.year() * 12 + (now.month() as i32 - 1) - months;
    let year = index.div_euclid(12);
    let month = Month::try_from((index.rem_euclid(12) + 1) as u8).expect("1..=12");
    let day = now.day().min(month.length(year));
    let date = Date::from_calendar_date(year, month, day).expect("a valid day");
    Some(now.replace_date(date))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn calendar_months() {
        let at = |p, now| cutoff(p, now).unwrap();
        assert_eq!(
            at(
                RetentionPeriod::ThreeMonths,
                datetime!(2026-05-31 10:00 UTC)
            ),
            datetime!(2026-02-28 10:00 UTC)
        );
        assert_eq!(
            at(
                RetentionPeriod::ThreeMonths,
                datetime!(2024-05-31 10:00 UTC)
            ),
            datetime!(2024-02-29 10:00 UTC)
        );
        assert_eq!(
            at(RetentionPeriod::OneYear, datetime!(2026-01-15 00:00:01 UTC)),
            datetime!(2025-01-15 00:00:01 UTC)
        );
        assert_eq!(
            at(
                RetentionPeriod::EighteenMonths,
                datetime!(2026-02-10 12:00 +2)
            ),
            datetime!(2024-08-10 12:00 +2)
        );
        assert_eq!(
            at(RetentionPeriod::TenYears, datetime!(2028-02-29 00:00 UTC)),
            datetime!(2018-02-28 00:00 UTC)
        );
        assert_eq!(
            cutoff(RetentionPeriod::Permanent, datetime!(2026-01-01 0:00 UTC)),
            None
        );
    }
}
