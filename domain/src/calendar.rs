//! Calendar rules: UTC dates, terms of one year, months.

use chrono::{Datelike, Days, Months, NaiveDate};

/// The exclusive end of a one-year term starting on `start`: the same day a
/// year later, and 1 March for a start on 29 February.
pub fn term_end(start: NaiveDate) -> NaiveDate {
    match start.checked_add_months(Months::new(12)) {
        // chrono clamps 29 February to 28 February; the rules say 1 March.
        Some(end) if end.day() != start.day() => end + Days::new(1),
        Some(end) => end,
        None => NaiveDate::MAX,
    }
}

/// Days in the month of `date`.
pub fn days_in_month(date: NaiveDate) -> u32 {
    let first = first_of_month(date);
    let next = first.checked_add_months(Months::new(1)).expect("dates stay far from the end of time");
    (next - first).num_days() as u32
}

pub fn first_of_month(date: NaiveDate) -> NaiveDate {
    date.with_day(1).expect("every month has a first day")
}

/// The last day of the month of `date`.
pub fn last_of_month(date: NaiveDate) -> NaiveDate {
    first_of_month(date) + Days::new(u64::from(days_in_month(date)) - 1)
}

/// Days from `date` to the end of its month, both included.
pub fn days_to_month_end(date: NaiveDate) -> u32 {
    days_in_month(date) - date.day() + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[test]
    fn terms_are_one_year_and_leap_days_end_on_the_first_of_march() {
        assert_eq!(term_end(d(2026, 1, 1)), d(2027, 1, 1));
        assert_eq!(term_end(d(2028, 2, 29)), d(2029, 3, 1));
        assert_eq!(term_end(d(2027, 2, 28)), d(2028, 2, 28));
        assert_eq!(term_end(d(2026, 3, 31)), d(2027, 3, 31));
    }

    #[test]
    fn months() {
        assert_eq!(days_in_month(d(2026, 2, 10)), 28);
        assert_eq!(days_in_month(d(2028, 2, 1)), 29);
        assert_eq!(days_to_month_end(d(2026, 1, 16)), 16);
        assert_eq!(days_to_month_end(d(2026, 1, 31)), 1);
        assert_eq!(last_of_month(d(2026, 4, 3)), d(2026, 4, 30));
    }
}
