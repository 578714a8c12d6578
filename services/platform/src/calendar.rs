//! Calendar dates without a date library.

/// The date `days` after 1970-01-01 (proleptic Gregorian calendar), `YYYY-MM-DD`.
pub fn civil_date(days: i64) -> String {
    // Howard Hinnant's days-to-civil algorithm, over eras of 400 years.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// The UTC date of the instant `ms` milliseconds after the epoch.
pub fn date_of_ms(ms: u64) -> String {
    civil_date(i64::try_from(ms / 86_400_000).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_the_civil_calendar_days_of_their_instants() {
        assert_eq!(date_of_ms(0), "1970-01-01");
        assert_eq!(date_of_ms(951_782_400_000), "2000-02-29");
        assert_eq!(date_of_ms(951_868_799_999), "2000-02-29");
        assert_eq!(date_of_ms(951_868_800_000), "2000-03-01");
        assert_eq!(date_of_ms(1_796_083_200_000), "2026-12-01");
        assert_eq!(civil_date(-1), "1969-12-31");
    }
}
