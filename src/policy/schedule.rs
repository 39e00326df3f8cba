//! An agent's `schedule`: the weekly windows it may act in, in one time zone. Outside them
//! every request of the agent is refused (403 `outside_schedule`), LLM calls included.
//!
//! A window is `DAYS HH:MM-HH:MM`. `DAYS` is `*` (every day), a day (`Mon`), a range
//! (`Mon-Fri`, `Fri-Mon` wraps) or a comma list of those (`Mon,Wed,Fri-Sun`). The start is
//! included and the end excluded; `24:00` ends at midnight; an end before the start runs past
//! midnight into the next day (`Fri 22:00-02:00` covers Friday night).

use jiff::tz::TimeZone;
use jiff::Timestamp;
use schemars::JsonSchema;
use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::problem::Problems;

/// `schedule:` as written.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleSpec {
    /// IANA time zone the windows are read in (default UTC).
    #[schemars(with = "Option<String>")]
    pub timezone: Option<Spanned<String>>,
    /// Weekly windows, `DAYS HH:MM-HH:MM` (e.g. `Mon-Fri 08:00-20:00`, `Sat 10:00-14:00`).
    #[schemars(with = "Vec<String>")]
    pub windows: Vec<Spanned<String>>,
}

/// A compiled schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    tz: TimeZone,
    windows: Vec<Window>,
}

/// One window: the days it starts on (bit 0 Monday … bit 6 Sunday) and its minutes of the day.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    days: u8,
    start: u16,
    end: u16,
}

const DAY_NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MINUTES_PER_DAY: u16 = 24 * 60;

impl Schedule {
    /// Whether the agent may act at `now`.
    pub fn allows(&self, now: Timestamp) -> bool {
        let local = now.to_zoned(self.tz.clone());
        let day = local.weekday().to_monday_zero_offset() as u8;
        let minute = local.hour() as u16 * 60 + local.minute() as u16;
        let yesterday = (day + 6) % 7;
        self.windows.iter().any(|w| {
            let starts_today = w.days & (1 << day) != 0;
            let started_yesterday = w.days & (1 << yesterday) != 0;
            if w.start < w.end {
                starts_today && (w.start..w.end).contains(&minute)
            } else {
                (starts_today && minute >= w.start) || (started_yesterday && minute < w.end)
            }
        })
    }
}

impl ScheduleSpec {
    /// The schedule written at `spec`, or `None` with each bad field reported.
    pub fn compile(spec: &Spanned<ScheduleSpec>, p: &mut Problems<'_>) -> Option<Schedule> {
        let this = &spec.value;
        if this.windows.is_empty() {
            p.error(spec, "a schedule needs at least one window");
            return None;
        }
        this.compile_windows(p)
    }

    fn compile_windows(&self, p: &mut Problems<'_>) -> Option<Schedule> {
        let tz = match &self.timezone {
            None => TimeZone::UTC,
            Some(name) => match TimeZone::get(&name.value) {
                Ok(tz) => tz,
                Err(_) => {
                    p.error(
                        name,
                        format!(
                            "unknown time zone `{}` (an IANA name such as Europe/Paris)",
                            name.value
                        ),
                    );
                    return None;
                }
            },
        };
        let mut windows = Vec::with_capacity(self.windows.len());
        let mut ok = true;
        for window in &self.windows {
            match parse_window(&window.value) {
                Ok(w) => windows.push(w),
                Err(why) => {
                    p.error(
                        window,
                        format!("bad schedule window `{}`: {why}", window.value),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(Schedule { tz, windows })
    }
}

fn parse_window(text: &str) -> Result<Window, String> {
    let (days, times) = text
        .trim()
        .split_once(' ')
        .ok_or("expected `DAYS HH:MM-HH:MM`")?;
    let (start, end) = times
        .trim()
        .split_once('-')
        .ok_or("expected a time range `HH:MM-HH:MM`")?;
    let (start, end) = (minute_of_day(start)?, minute_of_day(end)?);
    if start == MINUTES_PER_DAY {
        return Err("a window cannot start at 24:00".into());
    }
    if start == end {
        return Err("a window cannot start and end at the same time".into());
    }
    Ok(Window {
        days: parse_days(days)?,
        start,
        end,
    })
}

fn minute_of_day(text: &str) -> Result<u16, String> {
    let bad = || format!("`{text}` is not a time HH:MM");
    let (hours, minutes) = text.split_once(':').ok_or_else(bad)?;
    if hours.len() != 2 || minutes.len() != 2 {
        return Err(bad());
    }
    let hours: u16 = hours.parse().map_err(|_| bad())?;
    let minutes: u16 = minutes.parse().map_err(|_| bad())?;
    match (hours, minutes) {
        (24, 0) => Ok(MINUTES_PER_DAY),
        (0..=23, 0..=59) => Ok(hours * 60 + minutes),
        _ => Err(bad()),
    }
}

fn parse_days(text: &str) -> Result<u8, String> {
    if text == "*" {
        return Ok(0x7f);
    }
    let day = |name: &str| {
        DAY_NAMES
            .iter()
            .position(|d| d.eq_ignore_ascii_case(name))
            .ok_or_else(|| format!("`{name}` is not a day (Mon … Sun)"))
    };
    let mut days = 0u8;
    for part in text.split(',') {
        match part.split_once('-') {
            Some((first, last)) => {
                let (first, last) = (day(first)?, day(last)?);
                let mut d = first;
                loop {
                    days |= 1 << d;
                    if d == last {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => days |= 1 << day(part)?,
        }
    }
    Ok(days)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(tz: &str, windows: &[&str]) -> Schedule {
        Schedule {
            tz: TimeZone::get(tz).unwrap(),
            windows: windows.iter().map(|w| parse_window(w).unwrap()).collect(),
        }
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn weekdays_in_a_time_zone() {
        let office = schedule("Europe/Paris", &["Mon-Fri 08:00-20:00"]);
        // 2026-11-25 is a Wednesday; Paris is UTC+1 in November.
        assert!(office.allows(at("2026-11-25T07:00:00Z")));
        assert!(!office.allows(at("2026-11-25T06:59:00Z")));
        assert!(!office.allows(at("2026-11-25T19:00:00Z")));
        assert!(!office.allows(at("2026-11-28T12:00:00Z"))); // Saturday
    }

    #[test]
    fn overnight_and_wrapping_days() {
        let night = schedule("UTC", &["Fri 22:00-02:00", "Sat-Sun 10:00-24:00"]);
        assert!(night.allows(at("2026-11-27T23:00:00Z"))); // Friday night
        assert!(night.allows(at("2026-11-28T01:59:00Z"))); // early Saturday, Friday's window
        assert!(!night.allows(at("2026-11-28T02:00:00Z")));
        assert!(night.allows(at("2026-11-29T23:59:00Z"))); // Sunday
        assert!(!night.allows(at("2026-11-26T23:00:00Z"))); // Thursday
        assert_eq!(parse_days("Fri-Mon").unwrap(), 0b111_0001);
    }

    #[test]
    fn bad_windows_say_why() {
        for bad in [
            "Mon-Fri",
            "Mon 8:00-20:00",
            "Funday 08:00-09:00",
            "* 10:00-10:00",
            "* 24:00-01:00",
            "* 09:00-25:00",
        ] {
            assert!(parse_window(bad).is_err(), "{bad}");
        }
    }
}
