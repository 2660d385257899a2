//! Reads the longest stay out of a posted meter rule (NYC's `Meter_Hours` column).
//!
//! The rules are free text in several spellings: `2 HR Pas Mon-Sat 0900-1900`,
//! `3HR Com Mon-Fri 0700-1000 /2HR Pas Mon-Fri 1000-1900`, `30Min Com Mon-Sat 0600-2200`,
//! `2 HR Pas Mon-Fri 1000-1900 / Sat 0800-1900`. A rule is a list of segments separated by
//! `/` or `,`; a segment that starts with a duration (`2 HR`, `4Hr`, `30Min`) may name a
//! vehicle class (`Pas`, `Com`, `Buses`); one without a class keeps the class before it,
//! and one without a duration (`Sat 0800-1900`) only adds hours to the segment before it.
//!
//! Curbside books passenger cars, so the maximum stay is the longest passenger limit
//! (segments with no class count as passenger limits). A meter posted for commercial
//! vehicles or buses only takes its longest posted limit. A rule with no duration at all
//! cannot be read: the importer then uses its documented default and counts the rule.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum VehicleClass {
    Passenger,
    Commercial,
    Bus,
    Unstated,
}

/// The longest stay, in minutes, the rule allows a passenger car; `None` if unreadable.
pub fn max_stay_minutes(rule: &str) -> Option<u32> {
    let mut class = VehicleClass::Unstated;
    let mut passenger = None::<u32>;
    let mut any = None::<u32>;
    for segment in rule.split(['/', ',']) {
        let Some((minutes, rest)) = leading_duration(segment) else {
            continue;
        };
        class = stated_class(rest).unwrap_or(class);
        any = any.max(Some(minutes));
        if matches!(class, VehicleClass::Passenger | VehicleClass::Unstated) {
            passenger = passenger.max(Some(minutes));
        }
    }
    passenger.or(any)
}

/// `2 HR …`, `4Hr …`, `30Min …` at the start of a segment: the minutes and what follows.
fn leading_duration(segment: &str) -> Option<(u32, &str)> {
    let segment = segment.trim_start();
    let digits = segment.len()
        - segment
            .trim_start_matches(|c: char| c.is_ascii_digit())
            .len();
    let amount: u32 = segment[..digits].parse().ok()?;
    let rest = segment[digits..].trim_start();
    let word_end = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    let minutes = match rest[..word_end].to_ascii_lowercase().as_str() {
        "hr" | "hrs" | "hour" | "hours" => amount.checked_mul(60)?,
        "min" | "mins" | "minute" | "minutes" => amount,
        _ => return None,
    };
    (minutes > 0).then_some((minutes, &rest[word_end..]))
}

fn stated_class(rest: &str) -> Option<VehicleClass> {
    let word = rest.split_whitespace().next()?.to_ascii_lowercase();
    match word.as_str() {
        "pas" | "passenger" => Some(VehicleClass::Passenger),
        "com" | "commercial" => Some(VehicleClass::Commercial),
        "bus" | "buses" => Some(VehicleClass::Bus),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn reads_the_spellings_in_the_city_data() {
        let cases = [
            ("2 HR Pas Mon-Sat 0900-1900", Some(120)),
            ("2HR Pas Mon-Sat 0900-1900", Some(120)),
            (
                "2HR PAS Mon-Fri 1300-2200 / 2HR PAS Sat 0830-2200",
                Some(120),
            ),
            (
                "3HR Com Mon-Fri 0700-1000 /2HR Pas Mon-Fri 1000-1900",
                Some(120),
            ),
            (
                "3HR Com Mon-Sat 0700-1800 /6HR Pas Mon-Sat 1800-2400",
                Some(360),
            ),
            ("30Min Com Mon-Sat 0600-2200", Some(30)),
            ("2 HR Mon-Sat 1000-1400", Some(120)),
            (
                "2 HR Pas 0800-1900 Mon-Thur/4Hr Pas 0800-1900 Fri",
                Some(240),
            ),
            (
                "2 HR Pas Mon-Thurs 1600-1900 / 3HR Fri 1600-1900",
                Some(180),
            ),
            ("2 HR Pas Mon-Fri 1000-1900 / Sat 0800-1900", Some(120)),
            (
                "3HR Com Mon-Fri 0700-1900, 2HR Pas Mon-Fri 1900-2200, 2HR Pas Sat 0800-2200",
                Some(120),
            ),
            (
                "1HR Com Mon-Sat 0700-1600 /1HR Com Mon-Sat 1900-2200",
                Some(60),
            ),
            ("3HR Buses Mon-Sat 0700-1900", Some(180)),
            ("16HR Pas Mon-Sat 0000-2400", Some(960)),
            ("No Standing Anytime", None),
            ("", None),
            ("0 HR Pas", None),
        ];
        for (rule, expected) in cases {
            assert_eq!(max_stay_minutes(rule), expected, "{rule:?}");
        }
    }

    /// Every distinct rule in the bundled snapshot must be readable, and its limit must be
    /// one that the rule text itself posts.
    #[test]
    fn reads_every_rule_in_the_nyc_snapshot() {
        let mut reader = csv::Reader::from_reader(flate2::read::GzDecoder::new(
            crate::spots::import::NYC_SNAPSHOT,
        ));
        let column = reader
            .headers()
            .unwrap()
            .iter()
            .position(|h| h == "Meter_Hours")
            .unwrap();
        let rules: BTreeSet<String> = reader
            .records()
            .map(|record| record.unwrap()[column].to_owned())
            .collect();
        assert_eq!(rules.len(), 343);
        for rule in &rules {
            let minutes = max_stay_minutes(rule).unwrap_or_else(|| panic!("unreadable: {rule:?}"));
            let posted = if minutes.is_multiple_of(60) {
                let hours = minutes / 60;
                [
                    format!("{hours}HR"),
                    format!("{hours} HR"),
                    format!("{hours}Hr"),
                ]
                .iter()
                .any(|spelling| {
                    rule.to_ascii_uppercase()
                        .contains(&spelling.to_ascii_uppercase())
                })
            } else {
                rule.to_ascii_lowercase().contains(&format!("{minutes}min"))
            };
            assert!(
                posted,
                "{rule:?} gave {minutes} minutes, which it does not post"
            );
        }
    }
}
