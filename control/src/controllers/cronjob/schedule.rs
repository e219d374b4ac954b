//! CronJob schedules as Kubernetes reads them (robfig/cron's `ParseStandard`): five fields
//! or a descriptor (`@hourly`, `@daily`, ...), in the CronJob's `timeZone` or a `CRON_TZ=`
//! / `TZ=` prefix of the schedule, UTC otherwise. The times are croner's.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ScheduleError {
    #[error("Expected exactly 5 fields, found {found}: {schedule}")]
    FieldCount { found: usize, schedule: String },
    #[error("unrecognized descriptor: {0}")]
    Descriptor(String),
    #[error("{0}")]
    Pattern(String),
    #[error("unknown time zone {0}")]
    TimeZone(String),
    #[error("cannot use both timeZone field and TZ or CRON_TZ in schedule")]
    BothTimeZones,
}

/// A parsed schedule in its time zone.
#[derive(Debug)]
pub struct Schedule {
    cron: Cron,
    zone: Tz,
}

/// robfig/cron's descriptors, as five fields.
const DESCRIPTORS: &[(&str, &str)] = &[
    ("@yearly", "0 0 1 1 *"),
    ("@annually", "0 0 1 1 *"),
    ("@monthly", "0 0 1 * *"),
    ("@weekly", "0 0 * * 0"),
    ("@daily", "0 0 * * *"),
    ("@midnight", "0 0 * * *"),
    ("@hourly", "0 * * * *"),
];

pub fn zone(name: &str) -> Result<Tz, ScheduleError> {
    name.parse::<Tz>()
        .map_err(|_| ScheduleError::TimeZone(name.to_string()))
}

impl Schedule {
    /// `schedule` of a CronJob whose `spec.timeZone` is `time_zone`.
    pub fn parse(schedule: &str, time_zone: Option<&str>) -> Result<Schedule, ScheduleError> {
        let trimmed = schedule.trim();
        let (prefix_zone, fields) = match ["CRON_TZ=", "TZ="]
            .iter()
            .find_map(|p| trimmed.strip_prefix(p))
        {
            Some(rest) => {
                let (name, fields) = rest.split_once(' ').unwrap_or((rest, ""));
                (Some(name), fields.trim())
            }
            None => (None, trimmed),
        };
        let zone = match (prefix_zone, time_zone) {
            (Some(_), Some(_)) => return Err(ScheduleError::BothTimeZones),
            (Some(name), None) | (None, Some(name)) => self::zone(name)?,
            (None, None) => Tz::UTC,
        };
        let fields = if fields.starts_with('@') {
            DESCRIPTORS
                .iter()
                .find(|(d, _)| *d == fields)
                .map(|(_, f)| *f)
                .ok_or_else(|| ScheduleError::Descriptor(fields.to_string()))?
        } else {
            fields
        };
        let found = fields.split_whitespace().count();
        if found != 5 {
            return Err(ScheduleError::FieldCount {
                found,
                schedule: fields.to_string(),
            });
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(fields)
            .map_err(|e| ScheduleError::Pattern(e.to_string()))?;
        Ok(Schedule { cron, zone })
    }

    /// The first time after `t`.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.zone), false)
            .ok()
            .map(|n| n.with_timezone(&Utc))
    }

    /// The times after `earliest` up to `now` (`mostRecentScheduleTime`): the latest, and
    /// how many there were, counting at most `limit + 1`.
    pub fn missed(
        &self,
        earliest: DateTime<Utc>,
        now: DateTime<Utc>,
        limit: usize,
    ) -> (Option<DateTime<Utc>>, usize) {
        let (mut latest, mut count) = (None, 0);
        let mut t = earliest;
        while let Some(next) = self.next_after(t).filter(|n| *n <= now) {
            latest = Some(next);
            count += 1;
            if count > limit {
                // Too many to walk one by one: the latest is the last before `now`.
                latest = self
                    .cron
                    .find_previous_occurrence(&now.with_timezone(&self.zone), true)
                    .ok()
                    .map(|p| p.with_timezone(&Utc));
                break;
            }
            t = next;
        }
        (latest, count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn at(h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 3, 1, h, m, 0)
            .single()
            .unwrap_or_default()
    }

    /// (schedule, timeZone, from, the next time after it)
    type Case = (
        &'static str,
        Option<&'static str>,
        DateTime<Utc>,
        Option<DateTime<Utc>>,
    );

    #[test]
    fn schedules_parse_like_parse_standard() {
        let cases: &[Case] = &[
            ("*/1 * * * *", None, at(10, 0), Some(at(10, 1))),
            ("*/15 * * * *", None, at(10, 7), Some(at(10, 15))),
            ("@hourly", None, at(10, 7), Some(at(11, 0))),
            (
                "@daily",
                None,
                at(10, 7),
                Some(at(10, 7) + chrono::Duration::minutes(13 * 60 + 53)),
            ),
            // 09:00 in Berlin is 08:00 UTC in March (CET).
            ("0 9 * * *", Some("Europe/Berlin"), at(7, 0), Some(at(8, 0))),
            (
                "CRON_TZ=Europe/Berlin 0 9 * * *",
                None,
                at(7, 0),
                Some(at(8, 0)),
            ),
            (
                "TZ=America/New_York 30 5 * * *",
                None,
                at(0, 0),
                Some(at(10, 30)),
            ),
        ];
        for (schedule, tz, from, want) in cases {
            let s = Schedule::parse(schedule, *tz).unwrap_or_else(|e| panic!("{schedule}: {e}"));
            assert_eq!(s.next_after(*from), *want, "{schedule}");
        }
    }

    #[test]
    fn bad_schedules_say_why() {
        let cases: &[(&str, Option<&str>, ScheduleError)] = &[
            (
                "* * *",
                None,
                ScheduleError::FieldCount {
                    found: 3,
                    schedule: "* * *".into(),
                },
            ),
            (
                "0 * * * * *",
                None,
                ScheduleError::FieldCount {
                    found: 6,
                    schedule: "0 * * * * *".into(),
                },
            ),
            (
                "@sometimes",
                None,
                ScheduleError::Descriptor("@sometimes".into()),
            ),
            (
                "* * * * *",
                Some("Mars/Olympus"),
                ScheduleError::TimeZone("Mars/Olympus".into()),
            ),
            (
                "CRON_TZ=UTC * * * * *",
                Some("UTC"),
                ScheduleError::BothTimeZones,
            ),
        ];
        for (schedule, tz, want) in cases {
            assert_eq!(
                Schedule::parse(schedule, *tz).err().as_ref(),
                Some(want),
                "{schedule}"
            );
        }
        assert!(matches!(
            Schedule::parse("61 * * * *", None),
            Err(ScheduleError::Pattern(_))
        ));
    }

    #[test]
    fn missed_times_give_the_latest_and_a_count() {
        let s = Schedule::parse("*/10 * * * *", None).expect("parses");
        assert_eq!(s.missed(at(10, 0), at(10, 5), 100), (None, 0));
        assert_eq!(s.missed(at(10, 0), at(10, 35), 100), (Some(at(10, 30)), 3));
        assert_eq!(
            s.missed(at(10, 0), at(10, 30), 100),
            (Some(at(10, 30)), 3),
            "now counts"
        );
        let (latest, count) = s.missed(at(0, 0), at(23, 55), 5);
        assert_eq!((latest, count), (Some(at(23, 50)), 6));
    }
}
